//! Running many seeds, and turning the first failure into a bug report.
//!
//! One seed is one run of the simulation; a bug that needs a rare
//! interleaving shows in one seed out of thousands. So the runner runs a
//! range of seeds on every core, and when one fails it prints the seed and
//! the command that replays exactly that run, with its trace, on one core,
//! as often as it takes to understand it.

use std::any::Any;
use std::fmt;
use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// The first seed that failed, with what to type to see it again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedFailure {
    /// The seed.
    pub seed: u64,
    /// Why it failed: the error it returned, or the message it panicked
    /// with.
    pub message: String,
    /// The command that replays it.
    pub replay: String,
}

impl fmt::Display for SeedFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {} failed: {}\nreplay: {}",
            self.seed, self.message, self.replay
        )
    }
}

impl std::error::Error for SeedFailure {}

/// Runs `run` for every seed of `seeds`, on every core, with a progress line
/// on stderr, and returns how many seeds passed, or the lowest seed that
/// failed with `replay(seed)`, the command to replay it (say `cargo run
/// --release -p ch06-replication --bin simulate -- --seed 1234`).
///
/// A panic in `run` (an assertion inside a node) fails its seed like an
/// error does.
pub fn run_seeds(
    seeds: Range<u64>,
    run: impl Fn(u64) -> Result<(), String> + Sync,
    replay: impl Fn(u64) -> String,
) -> Result<usize, SeedFailure> {
    let next = AtomicU64::new(seeds.start);
    let stop = AtomicBool::new(false);
    let first_failure = Mutex::new(None::<(u64, String)>);
    let progress = Progress::new(seeds.clone().count());
    let threads = thread::available_parallelism().map_or(1, |n| n.get());
    thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                // Seeds are handed out in increasing order and none after a
                // failure, while seeds already handed out run to the end. So
                // every seed below a failing one has run, and the lowest
                // failure is the one a run on one core would have stopped
                // at, however the threads were scheduled.
                while !stop.load(Ordering::Relaxed) {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= seeds.end {
                        break;
                    }
                    if let Err(message) = run_one(&run, seed) {
                        stop.store(true, Ordering::Relaxed);
                        let mut first = first_failure.lock().unwrap();
                        if first.as_ref().is_none_or(|&(lowest, _)| seed < lowest) {
                            *first = Some((seed, message));
                        }
                    }
                    progress.one_done();
                }
            });
        }
    });
    progress.finish();
    match first_failure.into_inner().unwrap() {
        None => Ok(progress.done.into_inner()),
        Some((seed, message)) => Err(SeedFailure {
            seed,
            message,
            replay: replay(seed),
        }),
    }
}

/// Runs one seed, a panic turned into an error.
fn run_one(run: &impl Fn(u64) -> Result<(), String>, seed: u64) -> Result<(), String> {
    // The run owns its whole simulation and shares nothing that a panic
    // could leave half-changed, so unwinding out of it is safe.
    panic::catch_unwind(AssertUnwindSafe(|| run(seed)))
        .unwrap_or_else(|payload| Err(format!("panicked: {}", panic_message(&*payload))))
}

/// The text of a panic, which `panic!` makes a `&str` or a `String`.
fn panic_message(payload: &(dyn Any + Send)) -> &str {
    match (
        payload.downcast_ref::<&str>(),
        payload.downcast_ref::<String>(),
    ) {
        (Some(text), _) => text,
        (_, Some(text)) => text,
        _ => "(a panic without a message)",
    }
}

/// The progress line: seeds done, seeds per second, time left.
struct Progress {
    total: usize,
    done: AtomicUsize,
    started: Instant,
    last_drawn: Mutex<Instant>,
}

impl Progress {
    fn new(total: usize) -> Self {
        let now = Instant::now();
        Progress {
            total,
            done: AtomicUsize::new(0),
            started: now,
            last_drawn: Mutex::new(now),
        }
    }

    /// Counts a seed done, and redraws the line if it is time to.
    fn one_done(&self) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        // A few times a second at most: a terminal redrawn for each of
        // thousands of seeds would slow down the run it reports on.
        let mut last_drawn = self.last_drawn.lock().unwrap();
        if last_drawn.elapsed() >= Duration::from_millis(250) {
            *last_drawn = Instant::now();
            self.draw(done);
        }
    }

    /// Draws the line one last time, and ends it.
    fn finish(&self) {
        self.draw(self.done.load(Ordering::Relaxed));
        eprintln!();
    }

    /// Draws the line over the previous one (`\r` goes back to its start).
    fn draw(&self, done: usize) {
        let seconds = self.started.elapsed().as_secs_f64();
        let rate = done as f64 / seconds.max(0.001);
        let left = self.total.saturating_sub(done) as f64 / rate.max(0.001);
        eprint!(
            "\r{done}/{} seeds, {rate:.1} seeds/s, ETA {left:.0} s   ",
            self.total
        );
    }
}
