//! System tests that cross crates live in `tests/tests/`; this library only
//! holds what they share.

use std::path::{Path, PathBuf};

/// The root of the repository (the folder holding the root `Cargo.toml`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the repository root")
        .to_path_buf()
}
