//! `cargo xtask perf-report`: the performance page's figures, made from the
//! benchmarks' own output rather than copied by hand.
//!
//! Where the figures come from:
//!
//! - Criterion saves each benchmark's result in
//!   `target/criterion/<group>/<function>/<value>/new/` (a `/` in a group's
//!   name becomes `_` there): `benchmark.json` names the benchmark (its
//!   `full_id`, `ch01/append/log_append/100`, as `cargo bench` prints it, and
//!   its throughput) and `estimates.json` holds the statistics. The time
//!   criterion prints, and the one used here, is the `slope` estimate when
//!   it has one (linear sampling: iterations grow sample by sample) and the
//!   `mean` otherwise.
//! - `benches/e2e.sh` writes `target/e2e/results.tsv`, one row per run, its
//!   loopback baseline first; `benches/e2e-replication.sh` writes
//!   `target/e2e/replication.tsv`, one row per run, its baseline last;
//!   `benches/e2e-coordinator.sh` writes `target/e2e/coordinator.tsv`, its
//!   runs, the disk's fsync baseline, and etcd's figures when asked;
//!   `benches/e2e-cluster.sh` writes `target/e2e/cluster.tsv`, two tables
//!   of one row each (replication factor 3 against 1, and the failover
//!   time), each under a header row of its own.
//!
//! For each suite (a chapter's criterion benchmark `chNN`, `e2e`,
//! `e2e-replication`, `e2e-coordinator` or `e2e-cluster`) it writes
//! `book/src/perf/<suite>.md`, which `performance.md` includes: a header
//! naming the run (date, commit, CPU, cores, rustc, the exact command), the
//! ratios to baseline and every raw time; and
//! `book/src/images/perf/<suite>.svg`, a bar chart of the ratios.
//!
//! A *ratio* is the baseline's time divided by ours (for the end-to-end
//! runs, our MB/s over the baseline's): 1.0 is as fast as the machine
//! allows. Which measurement is divided by which baseline is the
//! [`BENCHES`] table below: the benches name their baselines by convention
//! only, so the pairing is written down here, once. The replication
//! harness's ratios compare runs with each other as well (replicated with
//! unreplicated, synced with not): [`REPLICATION_RATIOS`]. The coordinator's
//! and the cluster's figures are set against their goals instead, each as
//! a fraction of its goal (a time: the goal over it), 1.0 or more meeting
//! it.
//!
//! With `--run` it first runs each suite's command itself and records the
//! run (command, commit, machine) in `target/perf-report/<suite>.json`; the
//! header then names exactly what made the figures, and results older than
//! the run (an earlier run's, left by a filtered one) are not shown under
//! it. Results made another way (a `cargo bench` by hand, or a run newer
//! than the record) are still reported, under a header that says their
//! command was not recorded.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// A measurement and the baseline it is divided by, as criterion ids
/// (`group/function/value`, the names `cargo bench` prints).
struct Pair {
    /// The row's name in the table and the plot.
    label: &'static str,
    baseline: &'static str,
    measured: &'static str,
}

/// A chapter's criterion benchmark: `benches/benches/<name>.rs`.
struct Bench {
    /// The suite's name on the command line and in file names: `ch01`.
    suite: &'static str,
    /// The bench target: `ch01_commit_log`.
    name: &'static str,
    /// Its measurements with a baseline. Every other benchmark of the
    /// suite (a part of the cost, like the CRC alone) is listed with its
    /// raw time only.
    pairs: &'static [Pair],
}

const fn pair(label: &'static str, baseline: &'static str, measured: &'static str) -> Pair {
    Pair {
        label,
        baseline,
        measured,
    }
}

/// Every chapter's benchmark and its pairs. To add a chapter's benchmark:
/// add an entry with its bench target's name and, for each measurement that
/// has a baseline, the two ids as `cargo bench` prints them; then add a
/// `{{#include perf/chNN.md}}` to `book/src/performance.md`.
const BENCHES: &[Bench] = &[
    Bench {
        suite: "ch01",
        name: "ch01_commit_log",
        pairs: &[
            pair(
                "append, 100 B",
                "ch01/append/baseline_write/100",
                "ch01/append/log_append/100",
            ),
            pair(
                "append, 1 KiB",
                "ch01/append/baseline_write/1024",
                "ch01/append/log_append/1024",
            ),
            pair(
                "append + sync, 100 B",
                "ch01/append_sync_each/baseline_write_fdatasync/100",
                "ch01/append_sync_each/log_append_sync/100",
            ),
            pair(
                "append + sync, 1 KiB",
                "ch01/append_sync_each/baseline_write_fdatasync/1024",
                "ch01/append_sync_each/log_append_sync/1024",
            ),
            pair(
                "read all, 100 B",
                "ch01/read_all/baseline_read_file/100",
                "ch01/read_all/log_iter/100",
            ),
            pair(
                "read all, 1 KiB",
                "ch01/read_all/baseline_read_file/1024",
                "ch01/read_all/log_iter/1024",
            ),
        ],
    },
    Bench {
        suite: "ch02",
        name: "ch02_segments",
        // Against the floor (checksum + one `writev` per batch), not
        // against the buffered writes, which skip the log's system calls.
        pairs: &[
            pair(
                "append 1 × 100 B",
                "ch02/append/checksum_write/100B_x1",
                "ch02/append/log_append_batch/100B_x1",
            ),
            pair(
                "append 100 × 100 B",
                "ch02/append/checksum_write/100B_x100",
                "ch02/append/log_append_batch/100B_x100",
            ),
            pair(
                "append 1000 × 100 B",
                "ch02/append/checksum_write/100B_x1000",
                "ch02/append/log_append_batch/100B_x1000",
            ),
            pair(
                "append 1 × 1 KiB",
                "ch02/append/checksum_write/1024B_x1",
                "ch02/append/log_append_batch/1024B_x1",
            ),
            pair(
                "append 100 × 1 KiB",
                "ch02/append/checksum_write/1024B_x100",
                "ch02/append/log_append_batch/1024B_x100",
            ),
            pair(
                "append 1000 × 1 KiB",
                "ch02/append/checksum_write/1024B_x1000",
                "ch02/append/log_append_batch/1024B_x1000",
            ),
            pair(
                "random read (vs a scan)",
                "ch02/random_read/linear_scan/64MiB",
                "ch02/random_read/indexed/64MiB",
            ),
        ],
    },
    Bench {
        suite: "ch03",
        name: "ch03_partitions",
        pairs: &[
            pair(
                "produce, 1 partition",
                "ch03/produce/baseline_one_log/100B",
                "ch03/produce/topic_store/1_partitions",
            ),
            pair(
                "produce, 4 partitions",
                "ch03/produce/baseline_one_log/100B",
                "ch03/produce/topic_store/4_partitions",
            ),
            pair(
                "produce, 16 partitions",
                "ch03/produce/baseline_one_log/100B",
                "ch03/produce/topic_store/16_partitions",
            ),
            pair(
                "partition, 16-byte key",
                "ch03/partitioner/baseline_siphash/16",
                "ch03/partitioner/murmur2/16",
            ),
            pair(
                "partition, 100-byte key",
                "ch03/partitioner/baseline_siphash/100",
                "ch03/partitioner/murmur2/100",
            ),
        ],
    },
    Bench {
        suite: "ch04",
        name: "ch04_network",
        pairs: &[
            pair(
                "produce 100 B",
                "ch04/baseline_tcp_to_file/100B",
                "ch04/produce/100B",
            ),
            pair(
                "produce 100 B, 256 KiB batches",
                "ch04/baseline_tcp_to_file/100B",
                "ch04/produce_batch_256KiB/100B",
            ),
            pair(
                "consume 100 B",
                "ch04/baseline_tcp_to_file/100B",
                "ch04/consume/100B",
            ),
            pair(
                "produce 1 KiB",
                "ch04/baseline_tcp_to_file/1024B",
                "ch04/produce/1024B",
            ),
            pair(
                "produce 1 KiB, 256 KiB batches",
                "ch04/baseline_tcp_to_file/1024B",
                "ch04/produce_batch_256KiB/1024B",
            ),
            pair(
                "consume 1 KiB",
                "ch04/baseline_tcp_to_file/1024B",
                "ch04/consume/1024B",
            ),
        ],
    },
    Bench {
        suite: "ch05",
        name: "ch05_consumer_groups",
        pairs: &[
            pair(
                "rebalance, 2 members",
                "ch05/baseline_two_round_trips/2",
                "ch05/rebalance/2",
            ),
            pair(
                "rebalance, 8 members",
                "ch05/baseline_two_round_trips/8",
                "ch05/rebalance/8",
            ),
            pair(
                "rebalance, 32 members",
                "ch05/baseline_two_round_trips/32",
                "ch05/rebalance/32",
            ),
            pair(
                "commit one offset",
                "ch05/baseline_produce_one_record",
                "ch05/commit_one_offset",
            ),
        ],
    },
    Bench {
        suite: "ch06",
        name: "ch06_replication",
        // The follower's copy against moving the same stored bytes once
        // (read from the leader's segment, one write per fetch-sized
        // chunk); with a sync per fetch answer against the same plus an
        // `fdatasync` per chunk.
        pairs: &[
            pair(
                "replicate 100 B",
                "ch06/baseline_copy/100B",
                "ch06/replicate/100B",
            ),
            pair(
                "replicate 1 KiB",
                "ch06/baseline_copy/1024B",
                "ch06/replicate/1024B",
            ),
            pair(
                "replicate, flush before ack, 100 B",
                "ch06/baseline_copy_fsync/100B",
                "ch06/replicate_flush/100B",
            ),
            pair(
                "replicate, flush before ack, 1 KiB",
                "ch06/baseline_copy_fsync/1024B",
                "ch06/replicate_flush/1024B",
            ),
        ],
    },
    Bench {
        suite: "ch07",
        name: "ch07_coordinator",
        // A write through three servers' Raft in one thread against the
        // same write applied to one copy of the state.
        pairs: &[
            pair(
                "write through Raft, 100 B",
                "ch07/baseline_apply/100",
                "ch07/replicated_write/100",
            ),
            pair(
                "write through Raft, 1 KiB",
                "ch07/baseline_apply/1024",
                "ch07/replicated_write/1024",
            ),
        ],
    },
    Bench {
        suite: "ch08",
        name: "ch08_cluster",
        // The controller's whole reaction to a broker's death (decide,
        // encode, store through Raft) against storing the same write.
        pairs: &[
            pair(
                "failover, 300 partitions",
                "ch08/store/300",
                "ch08/decide_and_store/300",
            ),
            pair(
                "failover, 3,000 partitions",
                "ch08/store/3000",
                "ch08/decide_and_store/3000",
            ),
        ],
    },
];

/// The end-to-end harness's suite name, command and results file.
const E2E: &str = "e2e";
const E2E_COMMAND: &str = "benches/e2e.sh";
const E2E_RESULTS: &str = "e2e/results.tsv";

/// The replication harness's (chapter 6's cluster, end to end).
const REPLICATION: &str = "e2e-replication";
const REPLICATION_COMMAND: &str = "benches/e2e-replication.sh";
const REPLICATION_RESULTS: &str = "e2e/replication.tsv";

/// The coordinator harness's (chapter 7's ensemble, end to end).
const COORDINATOR: &str = "e2e-coordinator";
const COORDINATOR_COMMAND: &str = "benches/e2e-coordinator.sh";
const COORDINATOR_RESULTS: &str = "e2e/coordinator.tsv";

/// The coordinator's goals (issue 14): linearizable writes/s and reads/s
/// at the peak, and the p99 of writes at half the peak write rate, in ms.
const COORDINATOR_WRITES_GOAL: f64 = 50_000.0;
const COORDINATOR_READS_GOAL: f64 = 200_000.0;
const COORDINATOR_P99_GOAL_MS: f64 = 10.0;

/// The cluster harness's (chapter 8's `kfs cluster up`, end to end).
const CLUSTER: &str = "e2e-cluster";
const CLUSTER_COMMAND: &str = "benches/e2e-cluster.sh";
const CLUSTER_RESULTS: &str = "e2e/cluster.tsv";

/// The cluster's goals: replicated records/s at least half the
/// unreplicated (issue 13's, chapter 6's ratio measured on the full
/// `kfs broker`), and a failover within the session timeout plus this
/// many ms. The timeout is the run's own (the file says it): a dead
/// broker is noticed only when its session expires, and the second after
/// is the controller's, the new leader's and the client's share.
const CLUSTER_RATIO_GOAL: f64 = 0.50;
const CLUSTER_FAILOVER_MARGIN_MS: f64 = 1_000.0;

/// What a ratio of two replication runs compares.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Compared {
    /// Records/s, the measured run's over the reference's.
    Records,
    /// MB/s, the measured run's over the reference's.
    Megabytes,
    /// The leader's CPU time per record, the reference's over the measured
    /// run's: like the others, 1.0 is as cheap as the reference, and lower
    /// costs more.
    LeaderCpu,
}

/// A ratio of two runs of `benches/e2e-replication.sh`, by their ids.
struct RunRatio {
    /// The row's name in the table and the plot.
    label: &'static str,
    reference: &'static str,
    measured: &'static str,
    compared: Compared,
}

const fn run_ratio(
    label: &'static str,
    reference: &'static str,
    measured: &'static str,
    compared: Compared,
) -> RunRatio {
    RunRatio {
        label,
        reference,
        measured,
        compared,
    }
}

/// The replication harness's ratios. Replicated (`acks=all`, three
/// replicas) against unreplicated, in records/s and in the leader's CPU
/// per record (on three machines the leader alone would bound the rate,
/// its followers having cores of their own); the 1 KiB runs against what
/// loopback allows them on one machine (RF1 moves each byte once, RF3
/// three times at once); a follower's catch-up against the loopback
/// baseline; syncing before acknowledging against not.
const REPLICATION_RATIOS: &[RunRatio] = &[
    run_ratio(
        "records/s, RF3 ÷ RF1, 100 B",
        "rf1_100B",
        "rf3_100B",
        Compared::Records,
    ),
    run_ratio(
        "records/s, RF3 ÷ RF1, 1 KiB",
        "rf1_1KiB",
        "rf3_1KiB",
        Compared::Records,
    ),
    run_ratio(
        "MB/s, RF1 ÷ loopback, 1 KiB",
        "loopback_1KiB",
        "rf1_1KiB",
        Compared::Megabytes,
    ),
    run_ratio(
        "MB/s, RF3 ÷ loopback three at once, 1 KiB",
        "loopback_1KiB_x3",
        "rf3_1KiB",
        Compared::Megabytes,
    ),
    run_ratio(
        "leader CPU/record, RF1 ÷ RF3, 100 B",
        "rf1_100B",
        "rf3_100B",
        Compared::LeaderCpu,
    ),
    run_ratio(
        "leader CPU/record, RF1 ÷ RF3, 1 KiB",
        "rf1_1KiB",
        "rf3_1KiB",
        Compared::LeaderCpu,
    ),
    run_ratio(
        "MB/s, catch-up ÷ loopback",
        "baseline",
        "catchup",
        Compared::Megabytes,
    ),
    run_ratio(
        "records/s, before-ack ÷ os, 100 B",
        "rf3_100B",
        "rf3_100B_flush",
        Compared::Records,
    ),
    run_ratio(
        "records/s, before-ack ÷ os, 1 KiB",
        "rf3_1KiB",
        "rf3_1KiB_flush",
        Compared::Records,
    ),
];

/// What `cargo xtask perf-report` was asked to do.
pub(crate) struct Options {
    /// Suites as the user named them (`01`, `3`, `ch02`, `e2e`,
    /// `e2e-replication`, `e2e-coordinator`, `e2e-cluster`); empty: all.
    pub(crate) suites: Vec<String>,
    /// Run each suite's command first, and record the run.
    pub(crate) run: bool,
    /// Write a "not measured yet" fragment for a suite without results.
    pub(crate) allow_missing: bool,
    /// Extra arguments with `--run`: for criterion (a filter,
    /// `--measurement-time 2`), or for the end-to-end scripts when only
    /// they run (their sizes).
    pub(crate) bench_args: Vec<String>,
}

/// Runs `cargo xtask perf-report`.
pub(crate) fn run(root: &Path, options: &Options) -> Result<(), String> {
    let suites = select(&options.suites)?;
    let target = target_dir(root);
    if options.run {
        // Arguments go to criterion; to the end-to-end scripts (their
        // sizes) only when no criterion suite is run with them.
        let scripts_only = suites.iter().all(|s| bench(s).is_none());
        for suite in &suites {
            let args = if bench(suite).is_some() || scripts_only {
                &options.bench_args[..]
            } else {
                &[]
            };
            run_suite(root, &target, suite, args)?;
        }
    }
    let results = Results::load(&target)?;
    let out = Output {
        md_dir: root.join("book/src/perf"),
        svg_dir: root.join("book/src/images/perf"),
    };
    let missing: Vec<&String> = suites.iter().filter(|s| results.is_empty_for(s)).collect();
    match missing[..] {
        _ if options.allow_missing => {}
        [] => {}
        [suite] if bench(suite).is_none() => {
            return Err(format!(
                "no {suite} results: run {} first",
                script_of(suite)
            ));
        }
        [suite] => {
            return Err(format!(
                "no criterion results for {suite}: run {} first",
                command_of(suite)
            ));
        }
        _ => {
            let names: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
            return Err(format!(
                "no results for {}: run cargo xtask perf-report --run {} first \
                 (or pass --allow-missing)",
                names.join(", "),
                names.join(" ")
            ));
        }
    }
    let machine = Machine::now(root);
    for suite in &suites {
        let provenance = provenance(&target, suite, &results, &machine);
        let written = out.write(suite, &results, provenance.as_ref())?;
        println!("{written}");
    }
    Ok(())
}

/// The suites named on the command line, in the page's order; all if none.
fn select(wanted: &[String]) -> Result<Vec<String>, String> {
    let all: Vec<String> = BENCHES
        .iter()
        .map(|b| b.suite.to_string())
        .chain([
            E2E.to_string(),
            REPLICATION.to_string(),
            COORDINATOR.to_string(),
            CLUSTER.to_string(),
        ])
        .collect();
    if wanted.is_empty() {
        return Ok(all);
    }
    let mut chosen = Vec::new();
    for name in wanted {
        let number = name.trim_start_matches("ch").parse::<u32>().ok();
        let suite = number.map_or(name.clone(), |n| format!("ch{n:02}"));
        if !all.contains(&suite) {
            return Err(format!(
                "no benchmark suite {name:?}; there are: {}",
                all.join(", ")
            ));
        }
        if !chosen.contains(&suite) {
            chosen.push(suite);
        }
    }
    chosen.sort_by_key(|s| all.iter().position(|a| a == s));
    Ok(chosen)
}

fn bench(suite: &str) -> Option<&'static Bench> {
    BENCHES.iter().find(|b| b.suite == suite)
}

/// The command that measures a suite in full.
fn command_of(suite: &str) -> String {
    match bench(suite) {
        Some(b) => format!("cargo bench -p kfs-benches --bench {}", b.name),
        None => script_of(suite).to_string(),
    }
}

/// The script of a suite that is not a criterion benchmark.
fn script_of(suite: &str) -> &'static str {
    match suite {
        REPLICATION => REPLICATION_COMMAND,
        COORDINATOR => COORDINATOR_COMMAND,
        CLUSTER => CLUSTER_COMMAND,
        _ => E2E_COMMAND,
    }
}

/// Where cargo builds (and criterion saves its results): `CARGO_TARGET_DIR`
/// if set, else `target/` in the repository.
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), |d| root.join(d))
}

// ---------------------------------------------------------------------------
// Running a suite, and the record of the run

/// Runs one suite's command, with `args` (criterion's after a `--`), its
/// output shown as it comes, and records it.
fn run_suite(root: &Path, target: &Path, suite: &str, args: &[String]) -> Result<(), String> {
    let machine = Machine::now(root);
    let started = unix_now();
    let (mut command, mut shown) = match bench(suite) {
        Some(b) => {
            let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
            c.args(["bench", "-p", "kfs-benches", "--bench", b.name]);
            let mut shown = command_of(suite);
            if !args.is_empty() {
                c.arg("--");
                shown.push_str(" --");
            }
            (c, shown)
        }
        None => (
            Command::new(root.join(script_of(suite))),
            script_of(suite).to_string(),
        ),
    };
    command.args(args);
    for arg in args {
        shown.push(' ');
        shown.push_str(&shell_quote(arg));
    }
    // The one setting the benches read from the environment changes what
    // they measure, so the record names it.
    if let Ok(mib) = std::env::var("KFS_BENCH_LOG_MIB") {
        shown = format!("KFS_BENCH_LOG_MIB={} {shown}", shell_quote(&mib));
    }
    eprintln!("perf-report: running {shown}");
    let status = command
        .current_dir(root)
        .status()
        .map_err(|e| format!("{shown}: {e}"))?;
    if !status.success() {
        return Err(format!("{shown} failed ({status})"));
    }
    let record = serde_json::json!({
        "command": shown,
        "commit": machine.commit,
        "cpu": machine.cpu,
        "cores": machine.cores,
        "rustc": machine.rustc,
        "started": started,
        "finished": unix_now(),
    });
    let path = record_path(target, suite);
    fs::create_dir_all(path.parent().unwrap_or(target)).map_err(|e| e.to_string())?;
    fs::write(&path, format!("{record:#}\n")).map_err(|e| format!("{}: {e}", path.display()))
}

fn record_path(target: &Path, suite: &str) -> PathBuf {
    target.join("perf-report").join(format!("{suite}.json"))
}

/// `arg` as a shell would need it typed.
fn shell_quote(arg: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c);
    if !arg.is_empty() && arg.chars().all(plain) {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// The machine and the code as they are now.
struct Machine {
    /// `git rev-parse --short HEAD`, with `-dirty` if files under version
    /// control differ from it (the report's own output aside).
    commit: String,
    /// `/proc/cpuinfo`'s model name.
    cpu: String,
    cores: usize,
    /// `rustc --version`.
    rustc: String,
}

impl Machine {
    fn now(root: &Path) -> Machine {
        let git = |args: &[&str]| output_of(Command::new("git").args(args).current_dir(root));
        let commit = match git(&["rev-parse", "--short", "HEAD"]) {
            Some(hash) => {
                let changes = git(&[
                    "status",
                    "--porcelain",
                    "--untracked-files=no",
                    "--",
                    ".",
                    ":!book/src/perf",
                    ":!book/src/images/perf",
                ]);
                match changes {
                    Some(c) if c.is_empty() => hash,
                    _ => format!("{hash}-dirty"),
                }
            }
            None => "unknown".to_string(),
        };
        let cpu = fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, name)| name.trim().to_string())
            })
            .unwrap_or_else(|| "unknown CPU".to_string());
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let rustc = output_of(Command::new("rustc").arg("--version"))
            .unwrap_or_else(|| "rustc (unknown version)".to_string());
        Machine {
            commit,
            cpu,
            cores,
            rustc,
        }
    }
}

/// A command's trimmed stdout, if it ran and succeeded.
fn output_of(command: &mut Command) -> Option<String> {
    let output = command.output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

fn unix_now() -> u64 {
    seconds(SystemTime::now())
}

/// What a fragment's header says about the figures under it.
struct Provenance {
    /// The run's start, or when the oldest result was written.
    when: u64,
    /// When the newest result was written.
    until: u64,
    /// Results written before this are not the run's: an earlier run left
    /// them, and they are not reported under this run's header.
    since: u64,
    /// Whether a `--run` record covers every result: then the command and
    /// commit are the run's own. If not, they are the canonical command and
    /// the commit the report was made at.
    recorded: bool,
    command: String,
    commit: String,
    cpu: String,
    cores: usize,
    rustc: String,
}

/// The provenance of a suite's results; `None` if it has none.
fn provenance(target: &Path, suite: &str, results: &Results, now: &Machine) -> Option<Provenance> {
    let (oldest, newest) = results.written_for(suite)?;
    let record = fs::read_to_string(record_path(target, suite))
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok());
    // A record is only good for results its run wrote: none newer than it.
    let covering = record.filter(|r| r["finished"].as_u64().is_some_and(|f| f >= newest));
    if let Some(r) = covering {
        let text = |key: &str| r[key].as_str().unwrap_or("unknown").to_string();
        let started = r["started"].as_u64().unwrap_or(oldest);
        return Some(Provenance {
            when: started,
            until: newest,
            since: started,
            recorded: true,
            command: text("command"),
            commit: text("commit"),
            cpu: text("cpu"),
            cores: r["cores"].as_u64().unwrap_or(0) as usize,
            rustc: text("rustc"),
        });
    }
    Some(Provenance {
        when: oldest,
        until: newest,
        since: 0,
        recorded: false,
        command: command_of(suite),
        commit: now.commit.clone(),
        cpu: now.cpu.clone(),
        cores: now.cores,
        rustc: now.rustc.clone(),
    })
}

// ---------------------------------------------------------------------------
// Reading the results

/// Criterion's unit of throughput, per iteration.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Throughput {
    Bytes(u64),
    Elements(u64),
}

/// One criterion benchmark's saved result. Times are nanoseconds per
/// iteration.
#[derive(Debug, Clone)]
struct Measurement {
    /// `ch01/append/log_append/100`.
    id: String,
    low: f64,
    best: f64,
    high: f64,
    throughput: Option<Throughput>,
    /// When `estimates.json` was written: the order the bench ran them in.
    written: SystemTime,
}

/// One row of `target/e2e/results.tsv`.
#[derive(Debug, Clone, Default)]
struct E2eRun {
    /// `baseline` for the loopback baseline.
    id: String,
    label: String,
    /// The producer's `--throughput` limit, for a latency run.
    target_rate: Option<f64>,
    records_per_s: Option<f64>,
    mb_per_s: Option<f64>,
    /// Average, p99 and maximum latency, in milliseconds.
    latency: Option<[f64; 3]>,
    /// The broker's CPU seconds, and the run's wall-clock seconds.
    broker_cpu_wall: Option<[f64; 2]>,
}

/// One row of `target/e2e/replication.tsv`.
#[derive(Debug, Clone, Default)]
struct ReplicationRun {
    /// `rf3_100B`, `catchup`; `baseline` for the loopback baseline.
    id: String,
    label: String,
    /// The producer's `--throughput` limit, for the latency run.
    target_rate: Option<f64>,
    records_per_s: Option<f64>,
    mb_per_s: Option<f64>,
    /// Average, p99 and maximum latency, in milliseconds.
    latency: Option<[f64; 3]>,
    /// CPU time per record, in µs: every node's (brokers and controller),
    /// and the partition leader's alone.
    cpu_us_per_record: Option<[f64; 2]>,
    /// Every node's CPU seconds, and the run's wall-clock seconds (for the
    /// catch-up: from the follower's resuming to its return to the ISR).
    cpu_wall: Option<[f64; 2]>,
    /// The bytes moved, for the catch-up and its baseline.
    bytes: Option<f64>,
}

/// One row of `target/e2e/coordinator.tsv`.
#[derive(Debug, Clone, Default)]
struct CoordinatorRun {
    /// `writes_peak`, `reads_peak`, `writes_half_peak`, `fsync_baseline`,
    /// `etcd_check_perf`.
    id: String,
    label: String,
    /// How many sessions loaded the ensemble.
    sessions: Option<f64>,
    /// How many requests each session had in flight.
    in_flight: Option<f64>,
    /// The `--rate` a latency run was held to.
    target_rate: Option<f64>,
    requests_per_s: Option<f64>,
    /// Average, p50, p99 and maximum latency, in ms, each if measured (the
    /// baseline has an average, etcd a maximum).
    latency: [Option<f64>; 4],
    /// The three servers' CPU time per request, in µs.
    cpu_us_per_request: Option<f64>,
    /// Writes/s times the fsync's time: how many writes shared one fsync,
    /// at the least.
    writes_per_fsync: Option<f64>,
    /// What measured a row not made by `kfs perf coordinator`.
    command: Option<String>,
}

/// `target/e2e/cluster.tsv`: `benches/e2e-cluster.sh`'s two tables, of
/// one row each.
#[derive(Debug, Clone, PartialEq)]
struct ClusterRun {
    throughput: ClusterThroughput,
    failover: ClusterFailover,
}

/// The `throughput` row: `kfs perf produce --acks all` of 100 B records to
/// a one-partition topic, of replication factor 3 and then 1. Each pair is
/// RF3's figure, then RF1's.
#[derive(Debug, Clone, PartialEq)]
struct ClusterThroughput {
    records_per_s: [f64; 2],
    /// RF3's records/s over RF1's, as the harness computed it.
    ratio: f64,
    /// The cluster's CPU time (every process's) per record, in µs.
    cpu_us_per_record: [f64; 2],
}

/// The `failover` row: from `kill -9` of a partition's leader to the
/// first acknowledged `acks=all` write sent after it, over `runs` kills.
#[derive(Debug, Clone, PartialEq)]
struct ClusterFailover {
    runs: f64,
    p50_ms: f64,
    max_ms: f64,
    /// The brokers' session timeout in the run, which the goal is set by.
    session_timeout_ms: f64,
}

/// Everything found under `target/`.
struct Results {
    criterion: Vec<Measurement>,
    e2e: Vec<E2eRun>,
    /// When the e2e results were written.
    e2e_written: Option<u64>,
    replication: Vec<ReplicationRun>,
    /// When the replication results were written.
    replication_written: Option<u64>,
    coordinator: Vec<CoordinatorRun>,
    /// When the coordinator results were written.
    coordinator_written: Option<u64>,
    cluster: Option<ClusterRun>,
    /// When the cluster results were written.
    cluster_written: Option<u64>,
}

impl Results {
    /// Reads whatever results `target` holds; none is not an error here.
    fn load(target: &Path) -> Result<Results, String> {
        let mut criterion = Vec::new();
        read_criterion(&target.join("criterion"), &mut criterion)?;
        // In the order they ran, which is the order the bench file reads in.
        criterion.sort_by(|a, b| a.written.cmp(&b.written).then_with(|| a.id.cmp(&b.id)));
        let (e2e, e2e_written) = read_table(&target.join(E2E_RESULTS), parse_e2e)?;
        let (replication, replication_written) =
            read_table(&target.join(REPLICATION_RESULTS), parse_replication)?;
        let (coordinator, coordinator_written) =
            read_table(&target.join(COORDINATOR_RESULTS), parse_coordinator)?;
        let (cluster, cluster_written) = read_table(&target.join(CLUSTER_RESULTS), |text| {
            parse_cluster(text).map(Some)
        })?;
        Ok(Results {
            criterion,
            e2e,
            e2e_written,
            replication,
            replication_written,
            coordinator,
            coordinator_written,
            cluster,
            cluster_written,
        })
    }

    /// The criterion results of a chapter's suite: ids under `chNN/`.
    fn of(&self, suite: &str) -> impl Iterator<Item = &Measurement> {
        let prefix = format!("{suite}/");
        self.criterion
            .iter()
            .filter(move |m| m.id.starts_with(&prefix))
    }

    fn get(&self, id: &str) -> Option<&Measurement> {
        self.criterion.iter().find(|m| m.id == id)
    }

    fn is_empty_for(&self, suite: &str) -> bool {
        match suite {
            E2E => self.e2e.is_empty(),
            REPLICATION => self.replication.is_empty(),
            COORDINATOR => self.coordinator.is_empty(),
            CLUSTER => self.cluster.is_none(),
            _ => self.of(suite).next().is_none(),
        }
    }

    /// When the suite's oldest and newest results were written.
    fn written_for(&self, suite: &str) -> Option<(u64, u64)> {
        let table = match suite {
            E2E => Some(self.e2e_written.filter(|_| !self.e2e.is_empty())),
            REPLICATION => Some(
                self.replication_written
                    .filter(|_| !self.replication.is_empty()),
            ),
            COORDINATOR => Some(
                self.coordinator_written
                    .filter(|_| !self.coordinator.is_empty()),
            ),
            CLUSTER => Some(self.cluster_written.filter(|_| self.cluster.is_some())),
            _ => None,
        };
        if let Some(written) = table {
            let written = written?;
            return Some((written, written));
        }
        let times: Vec<u64> = self.of(suite).map(|m| seconds(m.written)).collect();
        Some((*times.iter().min()?, *times.iter().max()?))
    }
}

/// A harness's table, parsed, and when it was written; empty (no rows,
/// `None`) if the file is not there.
fn read_table<T: Default>(
    path: &Path,
    parse: fn(&str) -> Result<T, String>,
) -> Result<(T, Option<u64>), String> {
    match fs::read_to_string(path) {
        Ok(text) => Ok((
            parse(&text).map_err(|e| format!("{}: {e}", path.display()))?,
            modified(path),
        )),
        Err(_) => Ok((T::default(), None)),
    }
}

/// When a file was last written, in seconds since the epoch.
fn modified(path: &Path) -> Option<u64> {
    Some(seconds(fs::metadata(path).ok()?.modified().ok()?))
}

fn seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Walks criterion's folder for `new/benchmark.json` + `new/estimates.json`
/// pairs. (`base/` holds the previous run, kept for comparisons; `report/`
/// holds plots.)
fn read_criterion(dir: &Path, into: &mut Vec<Measurement>) -> Result<(), String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        if path.file_name().is_some_and(|n| n == "new") {
            if let Some(m) = read_measurement(&path)? {
                into.push(m);
            }
        } else {
            read_criterion(&path, into)?;
        }
    }
    Ok(())
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// One benchmark's result from its `new/` folder; `None` if the folder is
/// not a complete result (a run stopped half way).
fn read_measurement(new: &Path) -> Result<Option<Measurement>, String> {
    let (benchmark, estimates) = (new.join("benchmark.json"), new.join("estimates.json"));
    if !benchmark.is_file() || !estimates.is_file() {
        return Ok(None);
    }
    let id = read_json(&benchmark)?;
    let bad = |what: &str| format!("{}: no {what}", new.display());
    let full_id = id["full_id"].as_str().ok_or_else(|| bad("full_id"))?;
    let throughput = match &id["throughput"] {
        Value::Object(t) => t
            .iter()
            .find_map(|(kind, n)| match (kind.as_str(), n.as_u64()) {
                ("Bytes" | "BytesDecimal", Some(n)) => Some(Throughput::Bytes(n)),
                ("Elements", Some(n)) => Some(Throughput::Elements(n)),
                _ => None,
            }),
        _ => None,
    };
    let stats = read_json(&estimates)?;
    // Criterion's "typical" estimate: what it prints as `time: [...]`.
    let typical = if stats["slope"].is_object() {
        &stats["slope"]
    } else {
        &stats["mean"]
    };
    let number = |v: &Value, what: &str| v.as_f64().ok_or_else(|| bad(what));
    Ok(Some(Measurement {
        id: full_id.to_string(),
        low: number(
            &typical["confidence_interval"]["lower_bound"],
            "lower bound",
        )?,
        best: number(&typical["point_estimate"], "point estimate")?,
        high: number(
            &typical["confidence_interval"]["upper_bound"],
            "upper bound",
        )?,
        throughput,
        written: fs::metadata(&estimates)
            .and_then(|m| m.modified())
            .unwrap_or(UNIX_EPOCH),
    }))
}

/// A harness's table: a header row naming the columns, then one row per
/// run, tab-separated.
struct Tsv<'a> {
    header: Vec<&'a str>,
    /// Each row's line number in the file, and its fields.
    rows: Vec<(usize, Vec<&'a str>)>,
}

impl<'a> Tsv<'a> {
    fn parse(text: &'a str) -> Result<Tsv<'a>, String> {
        let mut lines = split_lines(text);
        let (_, header) = lines.next().ok_or("empty")?;
        Ok(Tsv {
            header,
            rows: lines.collect(),
        })
    }

    /// Several tables one after the other in one file, each starting with
    /// a header row whose first field is `first` (`e2e-cluster.sh`'s: each
    /// of its measurements has columns of its own).
    fn parse_several(text: &'a str, first: &str) -> Result<Vec<Tsv<'a>>, String> {
        let mut tables: Vec<Tsv<'a>> = Vec::new();
        for (line, fields) in split_lines(text) {
            if fields[0] == first {
                tables.push(Tsv {
                    header: fields,
                    rows: Vec::new(),
                });
            } else {
                let table = tables.last_mut().ok_or(format!(
                    "row {line} comes before any header row (one starting with {first:?})"
                ))?;
                table.rows.push((line, fields));
            }
        }
        if tables.is_empty() {
            return Err("empty".to_string());
        }
        Ok(tables)
    }

    /// The index of each named column, in the order named.
    fn columns<const N: usize>(&self, names: [&str; N]) -> Result<[usize; N], String> {
        let mut found = [0; N];
        for (slot, name) in found.iter_mut().zip(names) {
            *slot = self
                .header
                .iter()
                .position(|h| *h == name)
                .ok_or(format!("no column {name}"))?;
        }
        Ok(found)
    }

    /// Each row, with its line number in the file.
    fn rows(&self) -> impl Iterator<Item = Row<'_>> {
        self.rows.iter().map(|(line, fields)| Row {
            fields,
            line: *line,
        })
    }
}

/// A file's lines that are not blank, each with its number (from 1) and
/// its tab-separated fields.
fn split_lines(text: &str) -> impl Iterator<Item = (usize, Vec<&str>)> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| (n + 1, l.split('\t').collect()))
}

/// One row of a [`Tsv`]; `-` (or nothing) is an empty field.
struct Row<'a> {
    fields: &'a [&'a str],
    line: usize,
}

impl Row<'_> {
    fn text(&self, i: usize) -> &str {
        self.fields.get(i).copied().unwrap_or("-")
    }

    fn number(&self, i: usize) -> Result<Option<f64>, String> {
        match self.text(i) {
            "-" | "" => Ok(None),
            t => t
                .parse()
                .map(Some)
                .map_err(|_| format!("row {}: {t:?} is not a number", self.line)),
        }
    }

    /// Two fields that mean something only together.
    fn pair(&self, a: usize, b: usize) -> Result<Option<[f64; 2]>, String> {
        Ok(self.number(a)?.zip(self.number(b)?).map(|(a, b)| [a, b]))
    }

    /// Average, p99 and maximum latency.
    fn latency(&self, [avg, p99, max]: [usize; 3]) -> Result<Option<[f64; 3]>, String> {
        Ok(self
            .pair(avg, p99)?
            .zip(self.number(max)?)
            .map(|([a, p], m)| [a, p, m]))
    }
}

/// Parses `e2e.sh`'s table: a header row naming the columns, then one row
/// per run; `-` is an empty field.
fn parse_e2e(text: &str) -> Result<Vec<E2eRun>, String> {
    let table = Tsv::parse(text)?;
    let [id, label, rate, rps, mbps, avg, p99, max, cpu, wall] = table.columns([
        "id",
        "label",
        "target_rate",
        "records_per_s",
        "mb_per_s",
        "latency_avg_ms",
        "latency_p99_ms",
        "latency_max_ms",
        "broker_cpu_s",
        "wall_s",
    ])?;
    table
        .rows()
        .map(|row| {
            Ok(E2eRun {
                id: row.text(id).to_string(),
                label: row.text(label).to_string(),
                target_rate: row.number(rate)?,
                records_per_s: row.number(rps)?,
                mb_per_s: row.number(mbps)?,
                latency: row.latency([avg, p99, max])?,
                broker_cpu_wall: row.pair(cpu, wall)?,
            })
        })
        .collect()
}

/// Parses `e2e-replication.sh`'s table, as `e2e.sh`'s.
fn parse_replication(text: &str) -> Result<Vec<ReplicationRun>, String> {
    let table = Tsv::parse(text)?;
    let [id, label, rate, rps, mbps, avg, p99, max] = table.columns([
        "id",
        "label",
        "target_rate",
        "records_per_s",
        "mb_per_s",
        "latency_avg_ms",
        "latency_p99_ms",
        "latency_max_ms",
    ])?;
    let [cpu, wall, cpu_per_record, leader_per_record, bytes] = table.columns([
        "cluster_cpu_s",
        "wall_s",
        "cluster_cpu_us_per_record",
        "leader_cpu_us_per_record",
        "bytes",
    ])?;
    table
        .rows()
        .map(|row| {
            Ok(ReplicationRun {
                id: row.text(id).to_string(),
                label: row.text(label).to_string(),
                target_rate: row.number(rate)?,
                records_per_s: row.number(rps)?,
                mb_per_s: row.number(mbps)?,
                latency: row.latency([avg, p99, max])?,
                cpu_us_per_record: row.pair(cpu_per_record, leader_per_record)?,
                cpu_wall: row.pair(cpu, wall)?,
                bytes: row.number(bytes)?,
            })
        })
        .collect()
}

/// Parses `e2e-coordinator.sh`'s table, as `e2e.sh`'s.
fn parse_coordinator(text: &str) -> Result<Vec<CoordinatorRun>, String> {
    let table = Tsv::parse(text)?;
    let [id, label, sessions, in_flight, rate, rps] = table.columns([
        "id",
        "label",
        "sessions",
        "in_flight",
        "target_rate",
        "requests_per_s",
    ])?;
    let [avg, p50, p99, max] = table.columns([
        "latency_avg_ms",
        "latency_p50_ms",
        "latency_p99_ms",
        "latency_max_ms",
    ])?;
    let [cpu, per_fsync, command] =
        table.columns(["ensemble_cpu_us_per_request", "writes_per_fsync", "command"])?;
    table
        .rows()
        .map(|row| {
            let command = match row.text(command) {
                "-" | "" => None,
                c => Some(c.to_string()),
            };
            Ok(CoordinatorRun {
                id: row.text(id).to_string(),
                label: row.text(label).to_string(),
                sessions: row.number(sessions)?,
                in_flight: row.number(in_flight)?,
                target_rate: row.number(rate)?,
                requests_per_s: row.number(rps)?,
                latency: [
                    row.number(avg)?,
                    row.number(p50)?,
                    row.number(p99)?,
                    row.number(max)?,
                ],
                cpu_us_per_request: row.number(cpu)?,
                writes_per_fsync: row.number(per_fsync)?,
                command,
            })
        })
        .collect()
}

/// Parses `e2e-cluster.sh`'s file: two tables, each a header row (its first
/// field `measure`) and one row named by its first field, `throughput` and
/// `failover`. Unlike the other harnesses' rows, every figure is needed.
fn parse_cluster(text: &str) -> Result<ClusterRun, String> {
    let tables = Tsv::parse_several(text, "measure")?;
    let [records3, records1, ratio, cpu3, cpu1] = figures(
        &tables,
        "throughput",
        [
            "rf3 records/s",
            "rf1 records/s",
            "ratio",
            "rf3 CPU µs/record",
            "rf1 CPU µs/record",
        ],
    )?;
    let [runs, p50_ms, max_ms, session_timeout_ms] = figures(
        &tables,
        "failover",
        ["runs", "p50 ms", "max ms", "session timeout ms"],
    )?;
    Ok(ClusterRun {
        throughput: ClusterThroughput {
            records_per_s: [records3, records1],
            ratio,
            cpu_us_per_record: [cpu3, cpu1],
        },
        failover: ClusterFailover {
            runs,
            p50_ms,
            max_ms,
            session_timeout_ms,
        },
    })
}

/// The named figures, in the order named, of the row whose first field is
/// `measure`, looked up in the header of the table the row is in.
fn figures<const N: usize>(
    tables: &[Tsv],
    measure: &str,
    names: [&str; N],
) -> Result<[f64; N], String> {
    let (table, row) = tables
        .iter()
        .find_map(|t| Some((t, t.rows().find(|r| r.text(0) == measure)?)))
        .ok_or(format!("no {measure} row"))?;
    let columns = table
        .columns(names)
        .map_err(|e| format!("{measure} table: {e}"))?;
    let mut found = [0.0; N];
    for ((figure, column), name) in found.iter_mut().zip(columns).zip(names) {
        *figure = row
            .number(column)?
            .ok_or(format!("row {}: no {name}", row.line))?;
    }
    Ok(found)
}

// ---------------------------------------------------------------------------
// Writing the fragments and the plots

/// Where the fragments and plots go.
struct Output {
    md_dir: PathBuf,
    svg_dir: PathBuf,
}

impl Output {
    /// Writes a suite's fragment and plot; returns what it wrote, for the log.
    fn write(
        &self,
        suite: &str,
        results: &Results,
        provenance: Option<&Provenance>,
    ) -> Result<String, String> {
        let md_path = self.md_dir.join(format!("{suite}.md"));
        let svg_path = self.svg_dir.join(format!("{suite}.svg"));
        let (md, svg) = match provenance {
            Some(p) if suite == E2E => e2e_report(suite, &results.e2e, p),
            Some(p) if suite == REPLICATION => replication_report(suite, &results.replication, p),
            Some(p) if suite == COORDINATOR => coordinator_report(suite, &results.coordinator, p),
            // There is a provenance only with results (`written_for`).
            Some(p) if suite == CLUSTER => match &results.cluster {
                Some(run) => cluster_report(suite, run, p),
                None => (not_measured(suite), None),
            },
            Some(p) => chapter_report(suite, results, p),
            None => (not_measured(suite), None),
        };
        for dir in [&self.md_dir, &self.svg_dir] {
            fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        fs::write(&md_path, md).map_err(|e| format!("{}: {e}", md_path.display()))?;
        match svg {
            Some(svg) => {
                fs::write(&svg_path, svg).map_err(|e| format!("{}: {e}", svg_path.display()))?;
                Ok(format!(
                    "wrote {} and {}",
                    md_path.display(),
                    svg_path.display()
                ))
            }
            None => {
                // No figures: no plot of old ones either. (Absent already is fine.)
                let _ = fs::remove_file(&svg_path);
                Ok(format!("wrote {} (no results)", md_path.display()))
            }
        }
    }
}

const GENERATED: &str = "<!-- Generated by `cargo xtask perf-report` (xtask/src/perf_report.rs) \
from the benchmarks' saved results: regenerate it, do not edit it. -->\n\n";

fn not_measured(suite: &str) -> String {
    format!(
        "{GENERATED}*Not measured yet.* Run `{}` (or `cargo xtask perf-report --run {}`), \
         then `cargo xtask perf-report`.\n",
        command_of(suite),
        suite.trim_start_matches("ch"),
    )
}

/// The header every fragment starts with: which run, which machine.
fn header(p: &Provenance) -> String {
    let machine = format!("{}, {} cores, {}", p.cpu, p.cores, p.rustc);
    let mut out = String::from(GENERATED);
    if p.recorded {
        let _ = writeln!(
            out,
            "Measured {} on commit `{}`: {machine}. Command:",
            date(p.when),
            p.commit
        );
    } else {
        let written = if date(p.when) == date(p.until) {
            date(p.when)
        } else {
            format!("between {} and {}", date(p.when), date(p.until))
        };
        let _ = writeln!(
            out,
            "Results written {written}, by a command that was not recorded (`cargo xtask \
             perf-report --run` records it); report made on commit `{}`: {machine}. The suite \
             in full:",
            p.commit
        );
    }
    let _ = writeln!(out, "\n```sh\n{}\n```\n", p.command);
    out
}

/// A one-line description of the run for the plot.
fn plot_subtitle(p: &Provenance) -> String {
    format!(
        "{} · commit {} · {}, {} cores · {}",
        &date(p.when)[..10],
        p.commit,
        p.cpu,
        p.cores,
        p.rustc.split(" (").next().unwrap_or(&p.rustc)
    )
}

fn chapter_title(suite: &str) -> String {
    match suite.trim_start_matches("ch").parse::<u32>() {
        Ok(n) => format!("Chapter {n}"),
        Err(_) => "End to end".to_string(),
    }
}

fn chapter_report(suite: &str, results: &Results, p: &Provenance) -> (String, Option<String>) {
    let pairs = bench(suite).map_or(&[][..], |b| b.pairs);
    // Only this run's results.
    let ours = |m: &&Measurement| seconds(m.written) >= p.since;
    let get = |id: &str| results.get(id).filter(ours);
    let mut md = header(p);
    let mut bars = Vec::new();
    let mut table = String::from("| | baseline | ours | ratio |\n| --- | --- | --- | --- |\n");
    let mut absent = Vec::new();
    for pair in pairs {
        let (Some(base), Some(measured)) = (get(pair.baseline), get(pair.measured)) else {
            for id in [pair.baseline, pair.measured] {
                if get(id).is_none() && !absent.contains(&id) {
                    absent.push(id);
                }
            }
            continue;
        };
        let ratio = base.best / measured.best;
        let _ = writeln!(
            table,
            "| {} | `{}`: {} | `{}`: {} | **{}** |",
            pair.label,
            function_name(&base.id),
            time(base.best),
            function_name(&measured.id),
            time(measured.best),
            ratio_text(ratio)
        );
        bars.push((pair.label.to_string(), ratio));
    }
    let svg = (!bars.is_empty()).then(|| {
        let title = format!(
            "{}: ratio to baseline (1.0 = the baseline's speed)",
            chapter_title(suite)
        );
        svg_bars(&title, &plot_subtitle(p), &TO_BASELINE, &bars)
    });
    if svg.is_some() {
        let _ = writeln!(
            md,
            "![{}: each measurement's ratio to its baseline](images/perf/{suite}.svg)\n",
            chapter_title(suite)
        );
        md.push_str(&table);
        md.push('\n');
    }
    if !absent.is_empty() {
        let ids: Vec<String> = absent.iter().map(|id| format!("`{id}`")).collect();
        let _ = writeln!(
            md,
            "Not in these results (the run was filtered): {}.\n",
            ids.join(", ")
        );
    }
    md.push_str(
        "Every result of the run: criterion's estimate, between its low and high \
         bounds, and the throughput at the estimate.\n\n\
         | benchmark | low | time | high | throughput |\n| --- | ---: | ---: | ---: | ---: |\n",
    );
    for m in results.of(suite).filter(ours) {
        let _ = writeln!(
            md,
            "| `{}` | {} | **{}** | {} | {} |",
            m.id,
            time(m.low),
            time(m.best),
            time(m.high),
            m.throughput
                .map_or(String::new(), |t| throughput(t, m.best)),
        );
    }
    (md, svg)
}

fn e2e_report(suite: &str, runs: &[E2eRun], p: &Provenance) -> (String, Option<String>) {
    let baseline = runs
        .iter()
        .find(|r| r.id == "baseline")
        .and_then(|r| r.mb_per_s);
    let mut md = header(p);
    let mut bars = Vec::new();
    let mut half_peak_p99 = None;
    let mut table = String::from(
        "| run | records/s | MB/s | ratio | latency avg / p99 / max (ms) | broker CPU / wall (s) |\n\
         | --- | ---: | ---: | ---: | --- | --- |\n",
    );
    for run in runs {
        // A run held to a target rate measures latency, not throughput:
        // its MB/s is the rate it was given, so it gets no ratio.
        let ratio = match (run.mb_per_s, baseline, run.target_rate) {
            (Some(ours), Some(base), None) if base > 0.0 => Some(ours / base),
            _ => None,
        };
        if let (Some(r), false) = (ratio, run.id == "baseline") {
            bars.push((run.label.clone(), r));
        }
        if run.target_rate.is_some() {
            half_peak_p99 = run.latency.map(|l| l[1]);
        }
        let number = |v: Option<f64>, f: fn(f64) -> String| v.map_or(String::new(), f);
        let _ = writeln!(
            table,
            "| {}{} | {} | {} | {} | {} | {} |",
            run.label,
            number(run.target_rate, |r| format!(" at {}/s", count(r))),
            number(run.records_per_s, count),
            number(run.mb_per_s, |m| format!("{m:.0}")),
            number(ratio, |r| format!("**{}**", ratio_text(r))),
            run.latency
                .map_or(String::new(), |[a, p, m]| format!("{a} / **{p}** / {m}")),
            run.broker_cpu_wall
                .map_or(String::new(), |[c, w]| format!("{c:.2} / {w:.2}")),
        );
    }
    let mut subtitle = plot_subtitle(p);
    if let Some(p99) = half_peak_p99 {
        subtitle = format!("{subtitle} · p99 at half peak {p99} ms");
    }
    let svg = (!bars.is_empty()).then(|| {
        svg_bars(
            "End to end: MB/s as a ratio of loopback TCP to a file",
            &subtitle,
            &TO_BASELINE,
            &bars,
        )
    });
    if svg.is_some() {
        let _ = writeln!(
            md,
            "![End to end: each run's throughput as a ratio of the loopback baseline's](images/perf/{suite}.svg)\n"
        );
    }
    md.push_str(&table);
    (md, svg)
}

fn replication_report(
    suite: &str,
    runs: &[ReplicationRun],
    p: &Provenance,
) -> (String, Option<String>) {
    let get = |id: &str| runs.iter().find(|r| r.id == id);
    let mut md = header(p);
    let mut bars = Vec::new();
    let mut ratios =
        String::from("| | reference | measured | ratio |\n| --- | ---: | ---: | ---: |\n");
    let mut absent = Vec::new();
    for r in REPLICATION_RATIOS {
        let value = |run: &ReplicationRun| match r.compared {
            Compared::Records => run.records_per_s,
            Compared::Megabytes => run.mb_per_s,
            Compared::LeaderCpu => run.cpu_us_per_record.map(|[_, leader]| leader),
        };
        let mut found = |id: &str| {
            let v = get(id).and_then(value).filter(|v| *v > 0.0);
            let what = match r.compared {
                Compared::Records => "records/s",
                Compared::Megabytes => "MB/s",
                Compared::LeaderCpu => "leader CPU",
            };
            let name = format!("`{id}` ({what})");
            if v.is_none() && !absent.contains(&name) {
                absent.push(name);
            }
            v
        };
        let (reference, measured) = (found(r.reference), found(r.measured));
        let (Some(reference), Some(measured)) = (reference, measured) else {
            continue;
        };
        let (ratio, shown): (f64, fn(f64) -> String) = match r.compared {
            Compared::Records => (measured / reference, |v| format!("{}/s", count(v))),
            Compared::Megabytes => (measured / reference, |v| {
                format!("{} MB/s", three_digits(v))
            }),
            Compared::LeaderCpu => (reference / measured, |v| format!("{v:.2} µs/record")),
        };
        let _ = writeln!(
            ratios,
            "| {} | {} | {} | **{}** |",
            r.label,
            shown(reference),
            shown(measured),
            ratio_text(ratio)
        );
        bars.push((r.label.to_string(), ratio));
    }
    let half_peak_p99 = runs
        .iter()
        .find(|r| r.target_rate.is_some())
        .and_then(|r| r.latency)
        .map(|[_, p99, _]| p99);
    let mut subtitle = plot_subtitle(p);
    if let Some(p99) = half_peak_p99 {
        subtitle = format!("{subtitle} · p99 at half the RF3 peak {p99} ms");
    }
    let svg = (!bars.is_empty()).then(|| {
        svg_bars(
            "Replication end to end: each run against its reference",
            &subtitle,
            &Scale {
                reference: "reference",
                caption: "ratio to the reference: higher is better (faster, or cheaper)",
            },
            &bars,
        )
    });
    if svg.is_some() {
        let _ = writeln!(
            md,
            "![Replication end to end: each ratio of a run to its reference](images/perf/{suite}.svg)\n"
        );
        md.push_str(&ratios);
        md.push('\n');
    }
    if !absent.is_empty() {
        let _ = writeln!(
            md,
            "Ratios left out for want of a figure (missing, or zero in a short run): {}.\n",
            absent.join(", ")
        );
    }
    md.push_str(
        "Every run: the CPU time is every node's (three brokers and the controller), \
         and the partition leader's alone.\n\n\
         | run | records/s | MB/s | latency avg / p99 / max (ms) | CPU µs/record: all / leader | CPU / wall (s) |\n\
         | --- | ---: | ---: | --- | --- | --- |\n",
    );
    for run in runs {
        let number = |v: Option<f64>, f: fn(f64) -> String| v.map_or(String::new(), f);
        let _ = writeln!(
            md,
            "| {}{}{} | {} | {} | {} | {} | {} |",
            run.label,
            number(run.target_rate, |r| format!(" at {}/s", count(r))),
            number(run.bytes, |b| format!(
                ", {} MiB",
                three_digits(b / 1048576.0)
            )),
            number(run.records_per_s, count),
            number(run.mb_per_s, three_digits),
            run.latency
                .map_or(String::new(), |[a, p, m]| format!("{a} / **{p}** / {m}")),
            run.cpu_us_per_record
                .map_or(String::new(), |[c, l]| format!("{c:.2} / {l:.2}")),
            run.cpu_wall
                .map_or(String::new(), |[c, w]| format!("{c:.2} / {w:.2}")),
        );
    }
    (md, svg)
}

fn coordinator_report(
    suite: &str,
    runs: &[CoordinatorRun],
    p: &Provenance,
) -> (String, Option<String>) {
    let get = |id: &str| runs.iter().find(|r| r.id == id);
    let rate = |id: &str| get(id).and_then(|r| r.requests_per_s);
    let mut md = header(p);
    // Each goal, what was measured, and the measurement as a fraction of
    // the goal (for a latency, the goal over the measurement): 1.0 or more
    // meets it.
    let half = get("writes_half_peak");
    let half_p99 = half.and_then(|r| r.latency[2]);
    let goals = [
        (
            format!("linearizable writes/s ≥ {}", count(COORDINATOR_WRITES_GOAL)),
            rate("writes_peak").map(|w| (format!("{}/s", count(w)), w / COORDINATOR_WRITES_GOAL)),
        ),
        (
            format!("reads/s ≥ {}", count(COORDINATOR_READS_GOAL)),
            rate("reads_peak").map(|r| (format!("{}/s", count(r)), r / COORDINATOR_READS_GOAL)),
        ),
        (
            format!("write p99 ≤ {COORDINATOR_P99_GOAL_MS} ms at half the peak"),
            half_p99.filter(|p99| *p99 > 0.0).map(|p99| {
                let at = half
                    .and_then(|r| r.target_rate)
                    .map_or(String::new(), |r| format!(" at {}/s", count(r)));
                (format!("{p99} ms{at}"), COORDINATOR_P99_GOAL_MS / p99)
            }),
        ),
    ];
    let mut table =
        String::from("| goal | measured | measured ÷ goal | met |\n| --- | ---: | ---: | --- |\n");
    let mut bars = Vec::new();
    for (goal, measured) in &goals {
        match measured {
            Some((shown, ratio)) => {
                let met = if *ratio >= 1.0 { "**yes**" } else { "**no**" };
                let _ = writeln!(
                    table,
                    "| {goal} | {shown} | {} | {met} |",
                    ratio_text(*ratio)
                );
                bars.push((goal.clone(), *ratio));
            }
            None => {
                let _ = writeln!(table, "| {goal} | not measured | | |");
            }
        }
    }
    let subtitle = match get("fsync_baseline").and_then(|r| r.latency[0]) {
        Some(ms) => format!("{} · one fdatasync {ms} ms", plot_subtitle(p)),
        None => plot_subtitle(p),
    };
    let svg = (!bars.is_empty()).then(|| {
        svg_bars(
            "Coordinator end to end: each figure against its goal",
            &subtitle,
            &TO_GOAL,
            &bars,
        )
    });
    if svg.is_some() {
        let _ = writeln!(
            md,
            "![Coordinator end to end: each figure as a fraction of its goal](images/perf/{suite}.svg)\n"
        );
    }
    md.push_str(&table);
    md.push('\n');
    md.push_str(
        "Every run, the baseline and etcd (when measured) in one table. The CPU time is \
         the three servers'; writes per fsync is writes/s times one fsync's time, the \
         fewest writes that must have shared each fsync.\n\n\
         | run | sessions × in flight | requests/s | latency avg / p50 / p99 / max (ms) | servers' CPU µs/request | writes per fsync |\n\
         | --- | ---: | ---: | --- | ---: | ---: |\n",
    );
    for run in runs {
        let number = |v: Option<f64>, f: fn(f64) -> String| v.map_or(String::new(), f);
        let latency = if run.latency.iter().any(Option::is_some) {
            run.latency
                .iter()
                .enumerate()
                .map(|(i, v)| match (i, v) {
                    (2, Some(v)) => format!("**{v}**"),
                    (_, Some(v)) => v.to_string(),
                    (_, None) => "–".to_string(),
                })
                .collect::<Vec<_>>()
                .join(" / ")
        } else {
            String::new()
        };
        let _ = writeln!(
            md,
            "| {}{}{} | {} | {} | {latency} | {} | {} |",
            run.label,
            number(run.target_rate, |r| format!(" at {}/s", count(r))),
            run.command
                .as_ref()
                .map_or(String::new(), |c| format!(" (`{c}`)")),
            match (run.sessions, run.in_flight) {
                (Some(s), Some(f)) => format!("{s:.0} × {f:.0}"),
                (s, _) => number(s, |s| format!("{s:.0}")),
            },
            number(run.requests_per_s, count),
            number(run.cpu_us_per_request, |c| format!("{c:.1}")),
            number(run.writes_per_fsync, |w| format!("{w:.1}")),
        );
    }
    (md, svg)
}

/// `e2e-cluster`'s figures against its goals: replication factor 3's
/// records/s as a ratio of factor 1's, and the failover time, p50 and max,
/// against the run's session timeout plus [`CLUSTER_FAILOVER_MARGIN_MS`].
fn cluster_report(suite: &str, run: &ClusterRun, p: &Provenance) -> (String, Option<String>) {
    let (t, f) = (&run.throughput, &run.failover);
    let goal_ms = f.session_timeout_ms + CLUSTER_FAILOVER_MARGIN_MS;
    let seconds = |ms: f64| time(ms * 1e6);
    let mut md = header(p);
    let _ = writeln!(
        md,
        "![Cluster end to end: each figure as a fraction of its goal](images/perf/{suite}.svg)\n"
    );
    let _ = writeln!(
        md,
        "| `kfs perf produce --acks all`, 100 B records, one partition | replication factor 3 \
         | replication factor 1 | RF3 ÷ RF1 | goal | met |\n\
         | --- | ---: | ---: | ---: | --- | --- |\n\
         | records/s | {} | {} | **{}** | at least {CLUSTER_RATIO_GOAL:.2} | {} |\n\
         | cluster CPU per record (every process's, from `/proc`) | {:.1} µs | {:.1} µs | | | |\n",
        count(t.records_per_s[0]),
        count(t.records_per_s[1]),
        ratio_text(t.ratio),
        if t.ratio >= CLUSTER_RATIO_GOAL {
            "**yes**"
        } else {
            "**no**"
        },
        t.cpu_us_per_record[0],
        t.cpu_us_per_record[1],
    );
    // The goal is for every failover, the slowest too: a p50 within it
    // and a max beyond it is "p50 only".
    let failover_met = match (f.p50_ms <= goal_ms, f.max_ms <= goal_ms) {
        (_, true) => "**yes**",
        (true, false) => "**p50 only**",
        (false, false) => "**no**",
    };
    let _ = writeln!(
        md,
        "| failover: `kill -9` of the leader to the first acknowledged `acks=all` write sent \
         after it | p50 | max | session timeout | goal | met |\n\
         | --- | ---: | ---: | ---: | --- | --- |\n\
         | {:.0} runs | {} | {} | {} | at most {} (the session timeout + {}) | {failover_met} |",
        f.runs,
        seconds(f.p50_ms),
        seconds(f.max_ms),
        seconds(f.session_timeout_ms),
        seconds(goal_ms),
        seconds(CLUSTER_FAILOVER_MARGIN_MS),
    );
    // As the coordinator's plot: measured ÷ goal, for a time goal ÷
    // measured, so that 1.0 or more meets it.
    let bars = [
        (
            format!("records/s, RF3 ÷ RF1 ≥ {CLUSTER_RATIO_GOAL:.2}"),
            t.ratio / CLUSTER_RATIO_GOAL,
        ),
        (
            format!("failover p50 ≤ {}", seconds(goal_ms)),
            goal_ms / f.p50_ms,
        ),
        (
            format!("failover max ≤ {}", seconds(goal_ms)),
            goal_ms / f.max_ms,
        ),
    ];
    let svg = svg_bars(
        "Cluster end to end: each figure against its goal",
        &format!(
            "{} · session timeout {}",
            plot_subtitle(p),
            seconds(f.session_timeout_ms)
        ),
        &TO_GOAL,
        &bars,
    );
    (md, Some(svg))
}

/// `rebalance` from `ch05/rebalance/2`: the id without group and value.
fn function_name(id: &str) -> &str {
    let mut parts = id.rsplit('/');
    match (parts.next(), parts.next()) {
        (Some(_), Some(function)) if id.matches('/').count() >= 2 => function,
        (Some(last), _) => last,
        _ => id,
    }
}

// ---------------------------------------------------------------------------
// Numbers as people read them

/// Nanoseconds in the unit criterion would pick, to 3 significant digits.
fn time(ns: f64) -> String {
    let (value, unit) = match ns {
        n if n < 1e3 => (n, "ns"),
        n if n < 1e6 => (n / 1e3, "µs"),
        n if n < 1e9 => (n / 1e6, "ms"),
        n => (n / 1e9, "s"),
    };
    format!("{} {unit}", three_digits(value))
}

fn three_digits(v: f64) -> String {
    match v.abs() {
        a if a >= 100.0 => format!("{v:.0}"),
        a if a >= 10.0 => format!("{v:.1}"),
        _ => format!("{v:.2}"),
    }
}

/// A count per second: `1.96 M`, `456 K`.
fn count(v: f64) -> String {
    match v {
        v if v >= 1e9 => format!("{} G", three_digits(v / 1e9)),
        v if v >= 1e6 => format!("{} M", three_digits(v / 1e6)),
        v if v >= 1e3 => format!("{} K", three_digits(v / 1e3)),
        v => three_digits(v),
    }
}

/// Throughput at a time per iteration, in criterion's units.
fn throughput(t: Throughput, ns: f64) -> String {
    let per_second = |n: u64| n as f64 * 1e9 / ns;
    match t {
        Throughput::Bytes(n) => {
            let b = per_second(n);
            match b {
                b if b >= (1u64 << 30) as f64 => {
                    format!("{} GiB/s", three_digits(b / (1u64 << 30) as f64))
                }
                b if b >= (1u64 << 20) as f64 => {
                    format!("{} MiB/s", three_digits(b / (1u64 << 20) as f64))
                }
                b => format!("{} KiB/s", three_digits(b / 1024.0)),
            }
        }
        Throughput::Elements(n) => format!("{} elem/s", count(per_second(n))),
    }
}

/// A ratio: two decimals near 1, fewer when it is a big "times faster".
fn ratio_text(r: f64) -> String {
    if r >= 10.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.2}")
    }
}

/// Seconds since the epoch as `2026-12-01 14:03 UTC`.
fn date(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let (h, m) = (unix % 86_400 / 3600, unix % 3600 / 60);
    // Howard Hinnant's days-to-civil: the proleptic Gregorian calendar,
    // counted in 400-year eras that start on March 1st.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02} UTC")
}

// ---------------------------------------------------------------------------
// The plot

/// Escapes text for SVG.
fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The words on a plot's reference line at 1.0 and under its axis.
struct Scale {
    /// The line's label: `baseline`.
    reference: &'static str,
    /// The axis's caption: what a ratio is, and which way is better.
    caption: &'static str,
}

/// The chapters' and `e2e`'s plots: each ratio is to a baseline.
const TO_BASELINE: Scale = Scale {
    reference: "baseline",
    caption: "ratio to baseline: higher is faster",
};

/// The coordinator's and the cluster's plots: each figure against its goal.
const TO_GOAL: Scale = Scale {
    reference: "goal",
    caption: "measured ÷ goal (a latency: goal ÷ measured): 1.0 or more meets it",
};

/// A horizontal bar chart of ratios, one bar per row, with a dashed line at
/// 1.0 (the baseline, or each ratio's reference). The axis runs from 0 to the largest ratio rounded up
/// to a quarter, at least 1 and at most 2: a bar beyond (an index against a
/// linear scan, 700 times faster) is drawn to the edge in another colour,
/// its value written inside it, so it does not flatten every other bar.
fn svg_bars(title: &str, subtitle: &str, scale: &Scale, bars: &[(String, f64)]) -> String {
    const WIDTH: f64 = 760.0;
    const LABEL_W: f64 = 250.0; // the row names, right-aligned before the axis
    const PLOT_W: f64 = 400.0;
    const TOP: f64 = 64.0; // title and subtitle above
    const ROW: f64 = 26.0;
    const BAR: f64 = 18.0;
    let largest = bars.iter().map(|b| b.1).fold(0.0, f64::max);
    let axis_max = ((largest * 4.0).ceil() / 4.0).clamp(1.0, 2.0);
    let x = |r: f64| LABEL_W + 10.0 + PLOT_W * r.min(axis_max) / axis_max;
    let bottom = TOP + ROW * bars.len() as f64;
    let height = bottom + 40.0;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="13">"#
    );
    let _ = writeln!(s, "<title>{}</title>", xml(title));
    let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);
    let _ = writeln!(
        s,
        r#"<text x="10" y="22" font-size="15" font-weight="bold">{}</text>"#,
        xml(title)
    );
    let _ = writeln!(
        s,
        r##"<text x="10" y="42" font-size="11" fill="#555555">{}</text>"##,
        xml(subtitle)
    );
    // Grid lines and their labels, every quarter (every half past 1.25).
    let step = if axis_max > 1.25 { 0.5 } else { 0.25 };
    let mut tick = 0.0;
    while tick <= axis_max + 1e-9 {
        let tx = x(tick);
        let _ = writeln!(
            s,
            r##"<line x1="{tx:.1}" y1="{TOP}" x2="{tx:.1}" y2="{bottom}" stroke="#dddddd"/>"##
        );
        let _ = writeln!(
            s,
            r##"<text x="{tx:.1}" y="{:.1}" text-anchor="middle" font-size="11" fill="#555555">{tick:.2}</text>"##,
            bottom + 16.0
        );
        tick += step;
    }
    for (i, (label, ratio)) in bars.iter().enumerate() {
        let y = TOP + ROW * i as f64 + (ROW - BAR) / 2.0;
        let text_y = y + BAR - 4.0;
        let end = x(*ratio);
        let off_scale = *ratio > axis_max;
        let fill = if off_scale { "#2e7d4f" } else { "#4a78b0" };
        let _ = writeln!(
            s,
            r#"<text x="{LABEL_W}" y="{text_y:.1}" text-anchor="end">{}</text>"#,
            xml(label)
        );
        let _ = writeln!(
            s,
            r#"<rect x="{:.1}" y="{y:.1}" width="{:.1}" height="{BAR}" fill="{fill}"/>"#,
            x(0.0),
            end - x(0.0)
        );
        // The value after the bar; for a bar off the scale, inside its end.
        if off_scale {
            let _ = writeln!(
                s,
                r##"<text x="{:.1}" y="{text_y:.1}" text-anchor="end" fill="#ffffff">{}, off the scale</text>"##,
                end - 5.0,
                ratio_text(*ratio)
            );
        } else {
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{text_y:.1}">{}</text>"#,
                end + 5.0,
                ratio_text(*ratio)
            );
        }
    }
    // The baseline, drawn last so that it shows over the bars.
    let one = x(1.0);
    let _ = writeln!(
        s,
        r##"<line x1="{one:.1}" y1="{:.1}" x2="{one:.1}" y2="{bottom}" stroke="#c0392b" stroke-width="1.5" stroke-dasharray="5,3"/>"##,
        TOP - 6.0
    );
    let _ = writeln!(
        s,
        r##"<text x="{one:.1}" y="{:.1}" text-anchor="middle" font-size="11" fill="#c0392b">{}</text>"##,
        TOP - 9.0,
        xml(scale.reference)
    );
    let _ = writeln!(
        s,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="11" fill="#555555">{}</text>"##,
        x(axis_max / 2.0),
        bottom + 32.0,
        xml(scale.caption)
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Criterion's output from a real run (`ch03/partitioner`, filtered),
    /// a hand-made `e2e.sh` table, the table of a short real run of
    /// `e2e-replication.sh` (`20000 16`, a loaded machine), and of
    /// `e2e-coordinator.sh 5` (a loaded machine) with a hand-made etcd row
    /// (the issue's figures), and the file of a real run of
    /// `e2e-cluster.sh 2000000 20`.
    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/perf-report/target")
    }

    fn provenance_for(suite: &str, results: &Results) -> Provenance {
        Provenance {
            when: results.written_for(suite).unwrap().0,
            until: results.written_for(suite).unwrap().1,
            since: 0,
            recorded: true,
            command: command_of(suite),
            commit: "abc1234".into(),
            cpu: "Test CPU".into(),
            cores: 2,
            rustc: "rustc 1.95.0 (59807616e 2026-04-14)".into(),
        }
    }

    #[test]
    fn reads_criterion_results_and_pairs_them_with_their_baselines() {
        let results = Results::load(&fixture()).unwrap();
        let siphash = results.get("ch03/partitioner/baseline_siphash/16").unwrap();
        assert!(siphash.low <= siphash.best && siphash.best <= siphash.high);
        assert!(results.get("ch03/partitioner/sticky/keyless").is_some());
        assert!(results.is_empty_for("ch01"));

        let p = provenance_for("ch03", &results);
        let (md, svg) = chapter_report("ch03", &results, &p);
        let murmur = results.get("ch03/partitioner/murmur2/16").unwrap();
        let ratio = ratio_text(siphash.best / murmur.best);
        assert!(
            md.contains(&format!(
                "| partition, 16-byte key | `baseline_siphash`: {} | `murmur2`: {} | **{ratio}** |",
                time(siphash.best),
                time(murmur.best)
            )),
            "{md}"
        );
        // The filtered run left out the produce benchmarks: said, not hidden.
        assert!(
            md.contains("`ch03/produce/topic_store/4_partitions`"),
            "{md}"
        );
        assert!(md.contains("commit `abc1234`") && md.contains("--bench ch03_partitions"));
        // A benchmark without a baseline still has its raw time.
        assert!(md.contains("| `ch03/partitioner/sticky/keyless` |"), "{md}");

        let svg = svg.unwrap();
        assert_eq!(
            svg.matches("<rect").count(),
            1 + 2,
            "background and one bar a pair"
        );
        assert!(svg.contains("partition, 100-byte key") && svg.contains(&ratio));
        assert_well_formed(&svg);

        // Results older than a recorded run are an earlier run's: left out.
        let later = Provenance {
            since: u64::MAX,
            ..p
        };
        let (md, svg) = chapter_report("ch03", &results, &later);
        assert!(
            svg.is_none() && md.contains("`ch03/partitioner/murmur2/16`,"),
            "{md}"
        );
        assert!(!md.contains("| `ch03/partitioner/murmur2/16` |"), "{md}");
    }

    #[test]
    fn the_e2e_table_has_ratios_to_loopback_and_the_half_peak_p99() {
        let results = Results::load(&fixture()).unwrap();
        assert_eq!(results.e2e.len(), 4);
        let p = provenance_for(E2E, &results);
        let (md, svg) = e2e_report(E2E, &results.e2e, &p);
        // 190 MB/s of 1000: 0.19.
        assert!(
            md.contains("| produce 100 B | 1.99 M | 190 | **0.19** |"),
            "{md}"
        );
        // The rate-limited run: a latency, no ratio.
        assert!(
            md.contains("at 995 K/s | 995 K | 95 |  | 0.86 / **4.97** / 13.3 |"),
            "{md}"
        );
        let svg = svg.unwrap();
        assert!(svg.contains("p99 at half peak 4.97 ms"));
        assert!(svg.contains(">ratio to baseline: higher is faster</text>"));
        assert_eq!(svg.matches("<rect").count(), 1 + 2);
        assert_well_formed(&svg);
    }

    #[test]
    fn the_replication_table_has_its_ratios_the_half_peak_p99_and_cpu_per_record() {
        let results = Results::load(&fixture()).unwrap();
        assert_eq!(results.replication.len(), 11);
        let p = provenance_for(REPLICATION, &results);
        let (md, svg) = replication_report(REPLICATION, &results.replication, &p);
        // 726,182 records/s against 1,909,979.
        assert!(
            md.contains("| records/s, RF3 ÷ RF1, 100 B | 1.91 M/s | 726 K/s | **0.38** |"),
            "{md}"
        );
        // 297.01 and 83.66 MB/s against loopback once (310) and three
        // streams at once (120 each).
        assert!(
            md.contains("| MB/s, RF1 ÷ loopback, 1 KiB | 310 MB/s | 297 MB/s | **0.96** |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| MB/s, RF3 ÷ loopback three at once, 1 KiB | 120 MB/s | 83.7 MB/s | **0.70** |"
            ),
            "{md}"
        );
        // 332.87 MB/s against the baseline's 1585.03.
        assert!(
            md.contains("| MB/s, catch-up ÷ loopback | 1585 MB/s | 333 MB/s | **0.21** |"),
            "{md}"
        );
        assert!(
            md.contains("| records/s, before-ack ÷ os, 1 KiB | 85.7 K/s | 9.99 K/s | **0.12** |"),
            "{md}"
        );
        // RF1's CPU time was under a clock tick in so short a run.
        assert!(
            md.contains("`rf1_100B` (leader CPU), `rf1_1KiB` (leader CPU)."),
            "{md}"
        );
        // The latency run, and the catch-up with what it moved.
        assert!(
            md.contains(
                "| acks=all, RF3, 100 B at 363 K/s | 354 K | 33.7 | 1.09 / **2.41** / 2.44 \
                 | 2.00 / 1.50 | 0.04 / 0.06 |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| follower catch-up, 1 KiB records, 16.3 MiB |  | 333 |  |  | 0.08 / 0.05 |"
            ),
            "{md}"
        );
        let svg = svg.unwrap();
        assert!(svg.contains("p99 at half the RF3 peak 2.41 ms"));
        assert!(svg.contains(">reference</text>") && !svg.contains("baseline</text>"));
        // The background and seven bars: the two CPU ratios are left out.
        assert_eq!(
            svg.matches("<rect").count(),
            1 + 7,
            "the CPU ratios left out"
        );
        assert_well_formed(&svg);
    }

    #[test]
    fn the_coordinator_table_has_its_goals_the_fsync_baseline_and_etcd() {
        let results = Results::load(&fixture()).unwrap();
        assert_eq!(results.coordinator.len(), 5);
        let p = provenance_for(COORDINATOR, &results);
        let (md, svg) = coordinator_report(COORDINATOR, &results.coordinator, &p);
        // 21,210 writes/s of 50,000; 71,608 reads/s of 200,000; a p99 of
        // 30.45 ms against 10.
        assert!(
            md.contains("| linearizable writes/s ≥ 50.0 K | 21.2 K/s | 0.42 | **no** |"),
            "{md}"
        );
        assert!(
            md.contains("| reads/s ≥ 200 K | 71.6 K/s | 0.36 | **no** |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| write p99 ≤ 10 ms at half the peak | 30.45 ms at 10.6 K/s | 0.33 | **no** |"
            ),
            "{md}"
        );
        // Every run, with what it cost and how many writes an fsync carried.
        assert!(
            md.contains(
                "| linearizable writes (set), 100 B | 256 × 1 | 21.2 K | 12.02 / 11.35 / **26.73** \
                 / 36.3 | 34.0 | 53.3 |"
            ),
            "{md}"
        );
        // The baseline and etcd, each with its command and what it measured.
        assert!(
            md.contains(
                "| disk: 100 B write + fdatasync (baseline) (`dd if=/dev/zero bs=100 count=500 \
                 oflag=dsync`) |  | 398 | 2.512 / – / – / – |  |  |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| etcd 3.4, three members: puts (`etcdctl check perf --load=l`) |  | 2.73 K \
                 | – / – / – / 700 |  |  |"
            ),
            "{md}"
        );
        let svg = svg.unwrap();
        assert!(svg.contains("one fdatasync 2.512 ms"));
        assert!(svg.contains(">goal</text>"));
        assert_eq!(svg.matches("<rect").count(), 1 + 3);
        assert_well_formed(&svg);

        // A goal met says so; one not measured is there, unmarked.
        let mut runs = results.coordinator.clone();
        runs.retain(|r| r.id != "reads_peak");
        runs[0].requests_per_s = Some(61_000.0);
        let (md, _) = coordinator_report(COORDINATOR, &runs, &p);
        assert!(md.contains("| 61.0 K/s | 1.22 | **yes** |"), "{md}");
        assert!(
            md.contains("| reads/s ≥ 200 K | not measured | | |"),
            "{md}"
        );
    }

    #[test]
    fn the_cluster_tables_have_the_ratio_the_failover_and_their_goals() {
        let results = Results::load(&fixture()).unwrap();
        let run = results.cluster.clone().unwrap();
        assert_eq!(
            run,
            ClusterRun {
                throughput: ClusterThroughput {
                    records_per_s: [888_793.0, 1_644_966.0],
                    ratio: 0.540,
                    cpu_us_per_record: [1.2, 0.4],
                },
                failover: ClusterFailover {
                    runs: 20.0,
                    p50_ms: 2508.0,
                    max_ms: 2744.0,
                    session_timeout_ms: 2000.0,
                },
            }
        );
        let p = provenance_for(CLUSTER, &results);
        let (md, svg) = cluster_report(CLUSTER, &run, &p);
        assert!(
            md.contains("commit `abc1234`") && md.contains("```sh\nbenches/e2e-cluster.sh\n```")
        );
        assert!(
            md.contains("| records/s | 889 K | 1.64 M | **0.54** | at least 0.50 | **yes** |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| cluster CPU per record (every process's, from `/proc`) | 1.2 µs | 0.4 µs |"
            ),
            "{md}"
        );
        // The goal is the run's session timeout plus a second.
        assert!(
            md.contains(
                "| 20 runs | 2.51 s | 2.74 s | 2.00 s | at most 3.00 s (the session timeout \
                 + 1.00 s) | **yes** |"
            ),
            "{md}"
        );
        let svg = svg.unwrap();
        assert!(svg.contains("session timeout 2.00 s") && svg.contains(">goal</text>"));
        // 0.54 of a goal of 0.50; 3 s over 2.51 and over 2.74.
        for bar in [">1.08<", ">1.20<", ">1.09<"] {
            assert!(svg.contains(bar), "{bar} in {svg}");
        }
        assert_eq!(svg.matches("<rect").count(), 1 + 3);
        assert_well_formed(&svg);

        // A goal missed says so: by every run, or by the slowest only.
        let mut slow = run.clone();
        slow.throughput.ratio = 0.38;
        slow.failover.max_ms = 3_400.0;
        let (md, _) = cluster_report(CLUSTER, &slow, &p);
        assert!(md.contains("| **0.38** | at least 0.50 | **no** |"), "{md}");
        assert!(md.contains("| **p50 only** |"), "{md}");
        slow.failover.p50_ms = 3_100.0;
        let (md, _) = cluster_report(CLUSTER, &slow, &p);
        assert!(md.contains("+ 1.00 s) | **no** |"), "{md}");
    }

    #[test]
    fn a_malformed_cluster_file_is_an_error_saying_what_is_wrong() {
        let good = fs::read_to_string(fixture().join(CLUSTER_RESULTS)).unwrap();
        assert!(parse_cluster(&good).is_ok());
        let error = |text: &str| parse_cluster(text).unwrap_err();
        // Line 4 is the failover row.
        assert_eq!(
            error(&good.replace("2508", "2.5s")),
            "row 4: \"2.5s\" is not a number"
        );
        assert_eq!(
            error(&good.replace("\t2744\t2000", "\t2744")),
            "row 4: no session timeout ms"
        );
        assert_eq!(
            error(&good.replace("p50 ms", "median ms")),
            "failover table: no column p50 ms"
        );
        let no_failover: String = good.lines().take(3).map(|l| format!("{l}\n")).collect();
        assert_eq!(error(&no_failover), "no failover row");
        assert_eq!(
            error(&good.replacen("measure", "what", 1)),
            "row 1 comes before any header row (one starting with \"measure\")"
        );
        assert_eq!(error("\n"), "empty");

        // Through the report, the error names the file.
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("e2e")).unwrap();
        fs::write(dir.path().join(CLUSTER_RESULTS), &no_failover).unwrap();
        let error = Results::load(dir.path()).err().unwrap();
        assert!(
            error.ends_with("e2e/cluster.tsv: no failover row"),
            "{error}"
        );
    }

    #[test]
    fn writes_the_files_and_says_what_is_missing() {
        let results = Results::load(&fixture()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let out = Output {
            md_dir: dir.path().join("perf"),
            svg_dir: dir.path().join("images/perf"),
        };
        let p = provenance_for("ch03", &results);
        out.write("ch03", &results, Some(&p)).unwrap();
        let md = fs::read_to_string(dir.path().join("perf/ch03.md")).unwrap();
        assert!(md.contains("](images/perf/ch03.svg)"));
        assert!(dir.path().join("images/perf/ch03.svg").is_file());

        out.write("ch01", &results, None).unwrap();
        let md = fs::read_to_string(dir.path().join("perf/ch01.md")).unwrap();
        assert!(md.contains("Not measured yet") && md.contains("--bench ch01_commit_log"));
        assert!(!dir.path().join("images/perf/ch01.svg").exists());

        // No results at all: nothing to read is not an error until asked for.
        let empty = Results::load(&dir.path().join("no-target")).unwrap();
        assert!(empty.is_empty_for("ch03") && empty.is_empty_for(E2E));
        assert!(empty.is_empty_for(REPLICATION) && empty.is_empty_for(COORDINATOR));
        assert!(empty.is_empty_for(CLUSTER));
        out.write(REPLICATION, &empty, None).unwrap();
        let md = fs::read_to_string(dir.path().join("perf/e2e-replication.md")).unwrap();
        assert!(
            md.contains("`benches/e2e-replication.sh`")
                && md.contains("perf-report --run e2e-replication`"),
            "{md}"
        );
    }

    #[test]
    fn reads_a_throughput_and_falls_back_to_the_mean_without_a_slope() {
        let dir = tempfile::tempdir().unwrap();
        let new = dir.path().join("criterion/ch01_append/log_append/100/new");
        fs::create_dir_all(&new).unwrap();
        let id = r#"{"full_id": "ch01/append/log_append/100", "throughput": {"Bytes": 100}}"#;
        fs::write(new.join("benchmark.json"), id).unwrap();
        let estimate = |v: f64| {
            serde_json::json!({
                "point_estimate": v,
                "confidence_interval": {"lower_bound": v - 1.0, "upper_bound": v + 1.0}
            })
        };
        let stats = serde_json::json!({"mean": estimate(52.7), "slope": null});
        fs::write(new.join("estimates.json"), stats.to_string()).unwrap();
        let results = Results::load(dir.path()).unwrap();
        let m = results.get("ch01/append/log_append/100").unwrap();
        assert_eq!((m.low, m.best, m.high), (51.7, 52.7, 53.7));
        assert_eq!(m.throughput, Some(Throughput::Bytes(100)));
        assert_eq!(throughput(Throughput::Bytes(100), m.best), "1.77 GiB/s");
        assert_eq!(
            throughput(Throughput::Elements(65_536), 13.7e6),
            "4.78 M elem/s"
        );

        // A broken file is an error naming it, not a panic.
        fs::write(new.join("estimates.json"), "{").unwrap();
        let error = Results::load(dir.path()).err().unwrap();
        assert!(error.contains("estimates.json"), "{error}");
    }

    #[test]
    fn names_suites_and_numbers_as_people_do() {
        assert_eq!(
            select(&["3".into(), "e2e".into(), "ch01".into()]).unwrap(),
            ["ch01", "ch03", "e2e"]
        );
        assert_eq!(select(&[]).unwrap().len(), BENCHES.len() + 4);
        assert_eq!(
            select(&["e2e-coordinator".into(), "7".into()]).unwrap(),
            ["ch07", "e2e-coordinator"]
        );
        assert_eq!(command_of(COORDINATOR), "benches/e2e-coordinator.sh");
        assert_eq!(
            select(&["e2e-cluster".into(), "e2e-coordinator".into(), "8".into()]).unwrap(),
            ["ch08", "e2e-coordinator", "e2e-cluster"]
        );
        assert_eq!(command_of(CLUSTER), "benches/e2e-cluster.sh");
        assert_eq!(
            select(&["e2e-replication".into(), "6".into()]).unwrap(),
            ["ch06", "e2e-replication"]
        );
        assert_eq!(
            command_of(REPLICATION),
            "benches/e2e-replication.sh",
            "a script, not a criterion bench"
        );
        assert!(
            select(&["9".into()])
                .unwrap_err()
                .contains("there are: ch01")
        );
        assert_eq!(time(52.7), "52.7 ns");
        assert_eq!(time(14_500.0), "14.5 µs");
        assert_eq!(time(365e6), "365 ms");
        assert_eq!(ratio_text(0.584), "0.58");
        assert_eq!(ratio_text(735.2), "735");
        assert_eq!(date(0), "1970-01-01 00:00 UTC");
        assert_eq!(date(1_795_000_000), "2026-11-18 11:06 UTC");
        assert_eq!(function_name("ch05/rebalance/2"), "rebalance");
        assert_eq!(function_name("ch05/commit_one_offset"), "commit_one_offset");
        assert_eq!(shell_quote("ch03/partitioner"), "ch03/partitioner");
        assert_eq!(shell_quote("a b"), "'a b'");
    }

    /// Every element the plot opens is closed, in order.
    fn assert_well_formed(svg: &str) {
        let mut open = Vec::new();
        for tag in svg.split('<').skip(1) {
            let tag = tag.split('>').next().unwrap();
            let name: String = tag
                .trim_start_matches('/')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            if tag.starts_with('/') {
                assert_eq!(open.pop(), Some(name), "in {svg}");
            } else if !tag.ends_with('/') {
                open.push(name);
            }
        }
        assert!(open.is_empty(), "unclosed: {open:?}");
    }
}
