//! What the simulation tests share: the way a test runs many seeds or
//! replays one. (The simulated disk and the servers' shell are in
//! `ch07_coordinator::sim`.)

use ch06_replication::sim::run_seeds;

/// Runs `run` over `0..N` seeds, N from the environment variable
/// `{prefix}_SEEDS` (default `default`), or replays the one seed in
/// `{prefix}_SEED`; a failure panics with the seed and the command that
/// replays it (`test` is the test target's name).
pub(crate) fn seeds(
    prefix: &str,
    test: &str,
    default: u64,
    run: impl Fn(u64) -> Result<(), String> + Sync,
) {
    if let Ok(seed) = std::env::var(format!("{prefix}_SEED")) {
        let seed: u64 = seed.parse().expect("the seed is a number");
        if let Err(e) = run(seed) {
            panic!("seed {seed}: {e}");
        }
        return;
    }
    let count = std::env::var(format!("{prefix}_SEEDS"))
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    let replay =
        |seed| format!("{prefix}_SEED={seed} cargo test -p ch07-coordinator --test {test}");
    if let Err(failure) = run_seeds(0..count, run, replay) {
        panic!("{failure}");
    }
}
