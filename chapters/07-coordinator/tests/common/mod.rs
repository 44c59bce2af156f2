//! What the simulation tests share: a simulated disk for a Raft server, and
//! the way a test runs many seeds or replays one.

use ch06_replication::sim::{Disk, run_seeds};
use ch07_coordinator::raft::{DiskWrite, Entry, HardState, Index, Snapshot};

/// A server's disk. Writes wait in `unsynced` until [`SimDisk::sync`]
/// (one sync for all of them: group commit). A crash keeps what was synced
/// and a random prefix of the rest.
#[derive(Debug, Clone)]
pub(crate) struct SimDisk<C> {
    pub(crate) hard: HardState,
    pub(crate) snapshot: Option<Snapshot>,
    /// The log: it reaches the snapshot, and may begin before it.
    pub(crate) log: Vec<Entry<C>>,
    pub(crate) unsynced: Vec<DiskWrite<C>>,
    /// How many syncs it has had (a seed for the server's randomness).
    pub(crate) syncs: u64,
}

impl<C> Default for SimDisk<C> {
    fn default() -> Self {
        SimDisk {
            hard: HardState::default(),
            snapshot: None,
            log: Vec::new(),
            unsynced: Vec::new(),
            syncs: 0,
        }
    }
}

impl<C> SimDisk<C> {
    fn store(&mut self, write: DiskWrite<C>) {
        match write {
            DiskWrite::Hard(hard) => self.hard = hard,
            DiskWrite::Snapshot(snapshot) => {
                // As `Storage` does: the log keeps the entries since the
                // previous snapshot, unless it disagrees with this one at
                // its edge; then the snapshot replaces all of it.
                let previous = self.snapshot.as_ref().map_or(0, |s| s.last_index);
                let agrees = self
                    .log
                    .iter()
                    .any(|e| e.index == snapshot.last_index && e.term == snapshot.last_term);
                if agrees {
                    self.log.retain(|e| e.index > previous);
                } else {
                    self.log.clear();
                }
                self.snapshot = Some(snapshot);
            }
            DiskWrite::Truncate(from) => self.log.retain(|e| e.index < from),
            DiskWrite::Append(entry) => {
                let last = self.last_index();
                if entry.index > last {
                    assert_eq!(entry.index, last + 1, "a gap in the log");
                    self.log.push(entry);
                }
            }
        }
    }

    /// The index of the last entry stored.
    pub(crate) fn last_index(&self) -> Index {
        self.log
            .last()
            .map(|e| e.index)
            .or(self.snapshot.as_ref().map(|s| s.last_index))
            .unwrap_or(0)
    }

    /// Syncs every pending write; returns whether there were any.
    pub(crate) fn sync(&mut self) -> bool {
        if self.unsynced.is_empty() {
            return false;
        }
        for write in std::mem::take(&mut self.unsynced) {
            self.store(write);
        }
        self.syncs += 1;
        true
    }
}

impl<C> Disk for SimDisk<C> {
    fn crash(&mut self, rng: &mut fastrand::Rng) {
        let kept = rng.usize(0..=self.unsynced.len());
        for write in std::mem::take(&mut self.unsynced).into_iter().take(kept) {
            self.store(write);
        }
    }
}

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
