//! The parts of the course tooling that other crates use too: the exercise
//! markers and the book's preprocessor. `tests/` checks the book with them
//! without building it; the `cargo xtask` binary (`main.rs`) is the rest.

pub mod book;
pub mod markers;
