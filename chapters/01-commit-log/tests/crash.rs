//! The crash test: a child process appends and syncs records and reports
//! each sync on stdout; the test kills it with `SIGKILL` at a random moment,
//! reopens the log, and checks that every record the child reported as
//! synced is there, byte for byte. It does this several times over the same
//! file, so later rounds also recover from earlier rounds' crashes.
//!
//! The child is this same test binary, started with `--ignored --exact
//! crash_child` and the log's path in an environment variable.

use std::env;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use ch01_commit_log::{Config, Log};

const LOG_ENV: &str = "CH01_CRASH_LOG";
const ROUNDS: usize = 8;

/// The record at `offset`: its length and bytes follow from the offset, so
/// the checker knows what every offset must hold without being told.
fn record(offset: u64) -> Vec<u8> {
    let len = (offset * 7919 % 700) as usize;
    (0..len)
        .map(|i| (offset as usize).wrapping_mul(31).wrapping_add(i) as u8)
        .collect()
}

/// Runs in the child: append forever, sync every few records, and print
/// `synced N` after each sync (N = the next offset, so offsets below N are
/// durable).
#[test]
#[ignore = "the child process of `records_synced_before_sigkill_survive`"]
fn crash_child() {
    let path = env::var(LOG_ENV)
        .expect("this is a child process; run `records_synced_before_sigkill_survive`");
    let (mut log, _) = Log::open(&path, Config::default()).unwrap();
    let mut stdout = std::io::stdout().lock();
    let mut rng = fastrand::Rng::new();
    loop {
        for _ in 0..rng.usize(1..20) {
            let offset = log.next_offset();
            assert_eq!(log.append(&record(offset)).unwrap(), offset);
        }
        log.sync().unwrap();
        writeln!(stdout, "synced {}", log.next_offset()).unwrap();
        stdout.flush().unwrap();
    }
}

fn spawn_child(path: &Path) -> Child {
    Command::new(env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(LOG_ENV, path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

#[test]
fn records_synced_before_sigkill_survive() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.log");
    // Set CH01_CRASH_SEED to the seed a failure printed to replay its choices.
    let mut rng = match env::var("CH01_CRASH_SEED") {
        Ok(seed) => fastrand::Rng::with_seed(seed.parse().expect("a u64 seed")),
        Err(_) => fastrand::Rng::new(),
    };
    let seed = rng.get_seed();
    let mut synced = 0;

    for round in 0..ROUNDS {
        let mut child = spawn_child(&path);
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let reader = thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(n) = line.strip_prefix("synced ") {
                    let _ = tx.send(n.parse::<u64>().unwrap());
                }
            }
        });

        // Let the child report a random number of syncs, then kill it at a
        // random moment after that: between syncs, mid-append, mid-fsync.
        let wait_for = rng.usize(1..50);
        for _ in 0..wait_for {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(n) => synced = synced.max(n),
                Err(_) => panic!(
                    "round {round}: the child stopped reporting (status {:?}); seed {seed}",
                    child.try_wait()
                ),
            }
        }
        thread::sleep(Duration::from_micros(rng.u64(0..3000)));
        assert!(
            child.try_wait().unwrap().is_none(),
            "round {round}: the child exited by itself; seed {seed}"
        );
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        reader.join().unwrap();
        // Reports printed between our last read and the kill count too.
        synced = rx.try_iter().fold(synced, u64::max);

        let (log, recovery) = Log::open(&path, Config::default()).unwrap();
        assert!(
            log.next_offset() >= synced,
            "round {round}: the child synced {synced} records but only {} survived ({recovery}); seed {seed}",
            log.next_offset()
        );
        for record_read in log.iter_from(0).unwrap() {
            let record_read = record_read.unwrap();
            assert_eq!(
                record_read.payload,
                record(record_read.offset),
                "round {round}: offset {} holds the wrong bytes; seed {seed}",
                record_read.offset
            );
        }
    }
    assert!(synced > 0, "the child never synced anything; seed {seed}");
}
