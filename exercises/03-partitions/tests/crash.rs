//! The crash test: a child process creates, deletes and grows topics and
//! appends to them, reporting each change before (`begin ...`) and after
//! (`done ...`); the test kills it with `SIGKILL` at a random moment and
//! reopens the store. Every change the child finished must be there, the
//! one it was in the middle of must be all there or not at all, and the
//! data directory must hold exactly the partition directories the store
//! lists. Several rounds run over the same directory.
//!
//! The child is this same test binary, run with `--ignored --exact crash_child`.

use std::collections::BTreeMap;
use std::env;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use ch02_segments::Record;
use ch03_partitions::store::parse_partition_dir;
use ch03_partitions::{TopicConfig, TopicStore};

const DIR_ENV: &str = "CH03_CRASH_DIR";
const ROUNDS: usize = 8;
const NAMES: [&str; 4] = ["alpha", "beta", "gamma-1", "delta.x"];

/// Runs in the child: change topics at random forever. Each line is
/// `begin|done create|delete|add NAME PARTITIONS` (the partition count the
/// topic has when the change is done; 0 for deleted).
#[test]
#[ignore = "the child process of `topic_changes_are_all_or_nothing_under_sigkill`"]
fn crash_child() {
    let dir = env::var(DIR_ENV)
        .expect("this is a child process; run `topic_changes_are_all_or_nothing_under_sigkill`");
    let (mut store, _) = TopicStore::open(&dir).unwrap();
    let mut out = std::io::stdout().lock();
    let mut rng = fastrand::Rng::new();
    loop {
        let name = NAMES[rng.usize(..NAMES.len())];
        let (op, partitions) = match store.partition_count(name) {
            Err(_) => ("create", rng.u32(1..6)),
            Ok(n) if rng.bool() && n < 12 => ("add", n + rng.u32(1..3)),
            Ok(n) if rng.bool() => {
                // Appends are not what this test is about, but they give
                // the logs something to recover.
                let records = [Record::new(vec![7; rng.usize(..200)])];
                store.append(name, rng.u32(..n), &records).unwrap();
                continue;
            }
            Ok(_) => ("delete", 0),
        };
        writeln!(out, "begin {op} {name} {partitions}").unwrap();
        out.flush().unwrap();
        match op {
            "create" => drop(
                store
                    .create_topic(name, partitions, TopicConfig::default())
                    .unwrap(),
            ),
            "add" => store.add_partitions(name, partitions).unwrap(),
            _ => store.delete_topic(name).unwrap(),
        }
        writeln!(out, "done {op} {name} {partitions}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn topic_changes_are_all_or_nothing_under_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    // Set CH03_CRASH_SEED to the seed a failure printed to replay its timing.
    let mut rng = match env::var("CH03_CRASH_SEED") {
        Ok(seed) => fastrand::Rng::with_seed(seed.parse().expect("a u64 seed")),
        Err(_) => fastrand::Rng::new(),
    };
    let seed = rng.get_seed();
    // What the store must hold: topic -> partition count.
    let mut expected: BTreeMap<String, u32> = BTreeMap::new();
    // Rounds whose kill landed in the middle of a change, and those of them
    // where the change had passed its commit point.
    let (mut mid_change, mut committed) = (0, 0);

    for round in 0..ROUNDS {
        let mut child = Command::new(env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "crash_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DIR_ENV, dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let reader = thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let words: Vec<&str> = line.split(' ').collect();
                if let [phase @ ("begin" | "done"), _op, name, partitions] = words[..] {
                    let _ = tx.send((
                        phase == "done",
                        name.to_string(),
                        partitions.parse::<u32>().unwrap(),
                    ));
                }
            }
        });

        // Let it make some changes, then kill it at a random moment.
        let mut in_flight = None;
        let mut apply = |done: bool, name: String, partitions: u32| {
            if done {
                in_flight = None;
                if partitions == 0 {
                    expected.remove(&name);
                } else {
                    expected.insert(name, partitions);
                }
            } else {
                in_flight = Some((name, partitions));
            }
        };
        for _ in 0..rng.usize(1..40) {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok((done, name, partitions)) => apply(done, name, partitions),
                Err(_) => panic!("round {round}: the child stopped reporting; seed {seed}"),
            }
        }
        thread::sleep(Duration::from_micros(rng.u64(0..3000)));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        for (done, name, partitions) in rx.try_iter() {
            apply(done, name, partitions);
        }

        let (store, report) = TopicStore::open(dir.path()).unwrap();
        // The interrupted change, if any, happened entirely or not at all.
        if let Some((name, partitions)) = in_flight {
            mid_change += 1;
            let actual = store.partition_count(&name).ok();
            let after = (partitions > 0).then_some(partitions);
            let before = expected.get(&name).copied();
            assert!(
                actual == before || actual == after,
                "round {round}: {name} has {actual:?} partitions; before the change {before:?}, after {after:?}; {report:?}; seed {seed}"
            );
            if actual != before {
                committed += 1;
            }
            match actual {
                Some(p) => expected.insert(name, p),
                None => expected.remove(&name),
            };
        }
        let actual: BTreeMap<String, u32> = store
            .topics()
            .into_iter()
            .map(|t| {
                let count = store.partition_count(&t).unwrap();
                (t, count)
            })
            .collect();
        assert_eq!(actual, expected, "round {round}; {report:?}; seed {seed}");
        assert!(
            report.recreated.is_empty(),
            "round {round}: {report:?}; seed {seed}"
        );

        // The directory holds exactly the listed partitions.
        let mut dirs: Vec<(String, u32)> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().into_string().unwrap();
                parse_partition_dir(&name).map(|(t, p)| (t.to_string(), p))
            })
            .collect();
        dirs.sort();
        let listed: Vec<(String, u32)> = expected
            .iter()
            .flat_map(|(t, &n)| (0..n).map(move |p| (t.clone(), p)))
            .collect();
        assert_eq!(dirs, listed, "round {round}; seed {seed}");
    }
    // Not an assertion (that would depend on timing luck): a hint, with
    // `--nocapture`, of how often the kills hit a change in flight.
    eprintln!(
        "{mid_change} of {ROUNDS} kills landed mid-change, {committed} of them after the commit point"
    );
}
