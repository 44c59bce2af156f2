//! The benchmarks live in `benches/benches/`, one file per chapter: run them
//! with `cargo bench -p kfs-benches`. Each one measures its baseline (what
//! the machine can do without our code in the way) in the same run, so the
//! book can quote ratios rather than raw numbers from different days.
