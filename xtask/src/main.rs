//! `cargo xtask`: the course's own tooling, in Rust so that it needs nothing
//! but cargo.
//!
//! - `cargo xtask exercises` writes `exercises/` from the chapters;
//!   `--check` fails when it is out of date, does not compile, is already
//!   solved, or has a hole or rule that no test notices when cut alone.
//! - `cargo xtask grade 01` (or `all`) runs the course's tests on an
//!   exercise and prints a score per test group and the holes left to write.
//! - `cargo xtask hint 01 scan` shows a hole's hints, one more tier a call.
//! - `cargo xtask handout 01 DIR` writes one exercise as a project of its own.
//! - `cargo xtask demos` reruns every chapter's examples and stores their
//!   output where the book includes it; `--check` fails when it is stale.
//! - `cargo xtask perf-report` turns the benchmarks' saved results into the
//!   performance page's tables and plots; `--run` runs the benchmarks first.
//! - `cargo xtask mdbook-preprocessor` is the book's preprocessor (see
//!   `book/book.toml`): listings without exercise markers, solutions folded.

mod cargo;
mod demos;
mod exercises;
mod grade;
mod handout;
mod hint;
mod perf_report;
mod runner;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Course tooling for Kafka from Scratch.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate `exercises/` from the chapters' marked solution regions.
    Exercises {
        /// Change nothing under version control; fail if `exercises/` is
        /// out of date, if a skeleton does not compile, if a skeleton's
        /// tests all pass, or if cutting one hole or rule alone fails no
        /// test. (It refreshes `exercises/Cargo.lock`, which is not
        /// committed, from the root's.)
        #[arg(long)]
        check: bool,
        /// Overwrite `exercises/` even if it has uncommitted changes (a
        /// learner's work, say).
        #[arg(long, conflicts_with = "check")]
        force: bool,
        /// With `--check`: stop a test binary when no test has finished
        /// for this many seconds.
        #[arg(long, value_name = "SECS", default_value_t = 30)]
        timeout: u64,
        /// With `--check`: compile, test and cut the holes of this chapter
        /// only (its number or folder name); the rest is still checked to
        /// be up to date.
        #[arg(long, value_name = "CHAPTER", requires = "check")]
        chapter: Option<String>,
    },
    /// Run the course's tests on an exercise: a score per test group, and
    /// the holes (in the book's order) with the tests that wait on each.
    Grade {
        /// The chapter: its number (`01`, `1`), its folder name
        /// (`01-commit-log`), or `all` for a progress table.
        chapter: String,
        /// Grade the chapter's own solution instead of the exercise.
        #[arg(long)]
        solution: bool,
        /// Where the exercises are (default: `exercises/` in this repository),
        /// for grading a learner's copy or a handout.
        #[arg(long, value_name = "DIR")]
        exercises_dir: Option<PathBuf>,
        /// Stop a test binary when no test has finished for this many
        /// seconds, and report the test that hangs.
        #[arg(long, value_name = "SECS", default_value_t = 30)]
        timeout: u64,
    },
    /// Show a hole's hints, one more tier each time.
    Hint {
        /// The chapter: `01`, `1` or `01-commit-log`.
        chapter: String,
        /// The hole, as its `todo!()` names it (`scan`).
        hole: String,
        /// Show the hints up to this tier (1 is the `todo!()`'s message).
        #[arg(long, value_name = "N")]
        tier: Option<usize>,
    },
    /// Write one chapter's exercise as a standalone project to hand out.
    Handout {
        /// The chapter: `01`, `1` or `01-commit-log`.
        chapter: String,
        /// The folder to create (it must not exist, or be empty).
        dir: PathBuf,
    },
    /// Run every chapter's examples and store their output for the book.
    Demos {
        /// Write nothing; fail if the stored output differs from a fresh run.
        #[arg(long)]
        check: bool,
    },
    /// Turn the benchmarks' saved results (criterion's, and the end-to-end
    /// harnesses': `benches/e2e.sh`, `benches/e2e-replication.sh`,
    /// `benches/e2e-coordinator.sh`, `benches/e2e-cluster.sh`) into the
    /// performance page's tables (`book/src/perf/`) and plots
    /// (`book/src/images/perf/`).
    PerfReport {
        /// The suites: chapter numbers (`01`, `3`), `e2e`,
        /// `e2e-replication`, `e2e-coordinator` or `e2e-cluster`; all by
        /// default.
        suites: Vec<String>,
        /// Run each suite's benchmark first, and record the command, the
        /// commit and the machine for the tables' headers.
        #[arg(long)]
        run: bool,
        /// For a suite with no results, write a "not measured yet"
        /// fragment instead of failing.
        #[arg(long)]
        allow_missing: bool,
        /// With `--run`, after `--`: arguments for criterion (a filter,
        /// `--measurement-time 2`), or, when only end-to-end suites run,
        /// for their scripts (their sizes: `-- 20000 16`); recorded in the
        /// command shown.
        #[arg(last = true, requires = "run")]
        bench_args: Vec<String>,
    },
    /// The book's mdBook preprocessor (run by mdBook, see `book/book.toml`).
    #[command(hide = true)]
    MdbookPreprocessor {
        /// What mdBook passes: nothing, or `supports <renderer>`.
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let root = repo_root();
    let result = match cli.command {
        Command::Exercises {
            check: false,
            force,
            ..
        } => exercises::write(&root, force),
        Command::Exercises {
            check: true,
            timeout,
            chapter,
            ..
        } => exercises::check(&root, Duration::from_secs(timeout), chapter.as_deref()),
        Command::Grade {
            chapter,
            solution,
            exercises_dir,
            timeout,
        } => {
            let dir = exercises_dir.unwrap_or_else(|| root.join("exercises"));
            let timeout = Duration::from_secs(timeout);
            if chapter == "all" {
                grade::all(&root, &dir, timeout)
            } else {
                grade::run(&root, &dir, &chapter, solution, timeout)
            }
        }
        Command::Hint {
            chapter,
            hole,
            tier,
        } => hint::run(&root, &chapter, &hole, tier),
        Command::Handout { chapter, dir } => handout::run(&root, &chapter, &dir),
        Command::Demos { check } => demos::run(&root, check),
        Command::PerfReport {
            suites,
            run,
            allow_missing,
            bench_args,
        } => perf_report::run(
            &root,
            &perf_report::Options {
                suites,
                run,
                allow_missing,
                bench_args,
            },
        ),
        Command::MdbookPreprocessor { args } => xtask::book::run_preprocessor(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The repository root: xtask lives one folder below it.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the repository root")
        .to_path_buf()
}

/// A chapter crate under `chapters/`.
#[derive(Debug, Clone)]
struct Chapter {
    /// The folder name, e.g. `01-commit-log`.
    dir_name: String,
    /// The chapter's folder.
    path: PathBuf,
}

impl Chapter {
    /// The two-digit number, e.g. `01`.
    fn number(&self) -> &str {
        self.dir_name.split('-').next().unwrap_or_default()
    }

    /// The chapter's package name, e.g. `ch01-commit-log`.
    fn package(&self) -> String {
        format!("ch{}", self.dir_name)
    }

    /// The exercise's package name, e.g. `ex01-commit-log`.
    fn exercise_package(&self) -> String {
        format!("ex{}", self.dir_name)
    }

    /// The library's crate name, shared by chapter and exercise: `ch01_commit_log`.
    fn lib_name(&self) -> String {
        self.package().replace('-', "_")
    }
}

/// Every chapter, in order.
fn chapters(root: &Path) -> Result<Vec<Chapter>, String> {
    let dir = root.join("chapters");
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut chapters = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.join("Cargo.toml").is_file() {
            let dir_name = path.file_name().unwrap().to_string_lossy().into_owned();
            chapters.push(Chapter { dir_name, path });
        }
    }
    chapters.sort_by(|a, b| a.dir_name.cmp(&b.dir_name));
    Ok(chapters)
}

/// The chapter named by `wanted`: `1`, `01` or `01-commit-log`.
fn find_chapter(root: &Path, wanted: &str) -> Result<Chapter, String> {
    let all = chapters(root)?;
    let number = wanted.parse::<u32>().ok().map(|n| format!("{n:02}"));
    all.iter()
        .find(|c| c.dir_name == wanted || Some(c.number()) == number.as_deref())
        .cloned()
        .ok_or_else(|| {
            let names: Vec<_> = all.iter().map(|c| c.dir_name.as_str()).collect();
            format!("no chapter {wanted:?}; there are: {}", names.join(", "))
        })
}
