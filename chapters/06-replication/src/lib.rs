//! # Chapter 6: replication
//!
//! (Work in progress: the chapter's docs are written with its modules.)

pub mod sim;
