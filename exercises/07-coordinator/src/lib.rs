//! # Chapter 7: a ZooKeeper-like coordinator, replicated with Raft
//!
//! Work in progress: so far, the Raft core ([`raft`]) with snapshots, run
//! in chapter 6's simulator by `tests/raft_sim.rs` and checked for
//! linearizability ([`linearizability`]); ZooKeeper's data tree ([`tree`]);
//! the replicated state with sessions ([`state`]); and watches
//! ([`watches`]). The server node that joins them (session expiry,
//! forwarding to the leader, reads and `sync`), the client library and
//! recipes, the tokio shell and the book chapter come next.
//!
//! ## Layout
//!
//! - [`raft`]: Raft as a sans-IO state machine: elections, log replication,
//!   commit by majority, snapshots, and what must be synced before a message
//!   leaves.
//! - [`client`]: a client's session, sans-IO: opened on one server,
//!   resumed on the next when that one falls silent, requests in order.
//! - [`coordinator`]: the client library over TCP, [`coordinator::Coordinator`],
//!   ZooKeeper's handle: create, get, set, delete, children, sync, watches.
//! - [`linearizability`]: a checker that a history of concurrent operations
//!   could have come from one copy doing one thing at a time.
//! - [`local`]: three servers in one thread, on a perfect network, for
//!   examples, benchmarks and tests.
//! - [`node`]: one coordinator server, sans-IO: Raft, the state, sessions
//!   (opened, resumed on another server, expired by the leader), reads and
//!   watches, and writes forwarded to the leader.
//! - [`recipes`]: what applications build on it; so far the lock, with
//!   its fencing token.
//! - [`shell`]: the tokio shell: one server as a process, its core on a
//!   thread of its own (inputs, one sync, outputs), tokio tasks for the
//!   sockets.
//! - [`state`]: what the log carries ([`state::Command`]) and the
//!   replicated state it changes: the tree and the sessions, with each
//!   session's last request remembered so that a repeat is applied once.
//! - [`storage`]: a server's files: hard state, snapshot and log, torn
//!   tails cut on open, one `fsync` for every write since the last.
//! - [`tree`]: the state machine Raft replicates, ZooKeeper's data tree:
//!   znodes and their stats, ephemeral and sequential nodes, conditional
//!   writes, `multi`, and the changes each write makes, for the watches.
//! - [`watches`]: each server's one-shot data and child watches, fired by
//!   the changes of the entries it applies.
//!
//! ## How this differs from real Kafka
//!
//! Kafka's KRaft (KIP-500, KIP-595) replicates its metadata log with a
//! Raft variant whose followers pull (`Fetch`) instead of being pushed
//! (`AppendEntries`); this chapter follows the Raft paper.

pub mod client;
pub mod coordinator;
pub mod linearizability;
pub mod local;
pub mod node;
pub mod raft;
pub mod recipes;
pub mod shell;
pub mod state;
pub mod storage;
pub mod tree;
pub mod watches;
