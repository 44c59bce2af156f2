//! # Chapter 7: a ZooKeeper-like coordinator, replicated with Raft
//!
//! Work in progress: so far, the Raft core ([`raft`]) with snapshots, run
//! in chapter 6's simulator by `tests/raft_sim.rs` and checked for
//! linearizability ([`linearizability`]), and ZooKeeper's data tree
//! ([`tree`]). Sessions, watches, the server that applies the log to the
//! tree, the client library and recipes, the tokio shell and the book
//! chapter come next.
//!
//! ## Layout
//!
//! - [`raft`]: Raft as a sans-IO state machine: elections, log replication,
//!   commit by majority, snapshots, and what must be synced before a message
//!   leaves.
//! - [`linearizability`]: a checker that a history of concurrent operations
//!   could have come from one copy doing one thing at a time.
//! - [`tree`]: the state machine Raft replicates, ZooKeeper's data tree:
//!   znodes and their stats, ephemeral and sequential nodes, conditional
//!   writes, `multi`, and the changes each write makes, for the watches.
//!
//! ## How this differs from real Kafka
//!
//! Kafka's KRaft (KIP-500, KIP-595) replicates its metadata log with a
//! Raft variant whose followers pull (`Fetch`) instead of being pushed
//! (`AppendEntries`); this chapter follows the Raft paper.

pub mod linearizability;
pub mod raft;
pub mod tree;
