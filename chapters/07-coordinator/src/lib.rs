//! # Chapter 7: a ZooKeeper-like coordinator, replicated with Raft
//!
//! A small, strongly consistent store for a cluster's decisions: ZooKeeper's
//! tree of znodes, sessions and watches, kept on every server of an
//! ensemble by a Raft log. Chapter 8 elects Kafka's controller on it.
//!
//! ## Layout
//!
//! Sans-IO cores (start reading at [`raft`]), then the shells:
//!
//! - [`raft`]: Raft as a state machine: elections, log replication,
//!   commit by majority, snapshots, and what must be synced before a
//!   message leaves (its `Ready`).
//! - [`tree`]: ZooKeeper's data tree: znodes and their stats, ephemeral and
//!   sequential nodes, conditional writes, `multi`, and the changes each
//!   write makes, for the watches.
//! - [`state`]: what the log carries ([`state::Command`]) and the
//!   replicated state it changes: the tree and the sessions, each session
//!   remembering its last request so that a repeat applies once.
//! - [`watches`]: each server's one-shot data and child watches, and
//!   setting a moved client's watches again.
//! - [`node`]: one coordinator server: Raft, the state, sessions (opened
//!   through the log, resumed on another server, expired by the leader),
//!   local reads (held behind the session's writes), writes forwarded to
//!   the leader.
//! - [`client`]: a client's session: opened on one server, resumed on the
//!   next when that one falls silent (its watches set again there),
//!   requests pipelined, answered in order.
//! - [`recipes`]: a lock (with a fencing token), an election (with an
//!   epoch) and group membership, built on a session.
//! - [`linearizability`]: the checker the simulation tests use.
//! - [`storage`]: a server's files: hard state, snapshot and log, a torn
//!   tail cut on open, one `fsync` for everything since the last.
//! - [`shell`]: the tokio shell: one server as a process.
//! - [`coordinator`]: the client library over TCP,
//!   [`coordinator::Coordinator`].
//! - [`local`]: three servers in one thread, for the example, the benchmark
//!   and unit tests.
//! - [`sim`]: the servers in chapter 6's simulator: a disk that loses what
//!   was not synced, connections in order, and the shell around a server
//!   (the simulation tests use it, and chapter 8's lab).
//!
//! ## Guarantees
//!
//! ZooKeeper's, each tested:
//!
//! - **Writes are linearizable**: every write, compare-and-set included,
//!   takes effect at one instant between its call and its answer, in one
//!   order every server agrees on (`tests/raft_sim.rs`,
//!   `tests/coordinator_sim.rs`: a linearizability checker over histories
//!   with crashes, power losses and partitions).
//! - **A client's operations apply in the order it sent them**, though it
//!   pipelines them: its server holds a read back behind the writes sent
//!   before it, and a write names the one before it, so that the state
//!   drops it if that one did not take effect; answers come in the order
//!   the requests went ([`node`]'s, [`state`]'s and [`client`]'s tests,
//!   `tests/ensemble.rs`; the simulation checks the order of every
//!   connection's answers).
//! - **Reads are served by the client's own server** and may be behind the
//!   leader (sequentially consistent, not linearizable: the simulation
//!   finds a stale read at once if `sync` is left out); **`sync` then read
//!   is current**: the read sees every write committed before the `sync`
//!   began (`tests/coordinator_sim.rs`).
//! - **A client never goes back in time**: every answer carries the
//!   server's zxid, and a server that has applied less than the client has
//!   seen refuses to resume its session ([`node`]'s tests; the simulation's
//!   watch checker: the zxids a session hears never go down).
//! - **A session's ephemeral nodes go when it ends**, at one point of the
//!   log on every server, and **a watch fires once**, before the client can
//!   see the change, even across a move to another server: the client sets
//!   its watches again there with the last zxid it saw, and those whose
//!   node changed after it fire at once ([`node`]'s, [`watches`]'s and
//!   [`client`]'s tests, `tests/ensemble.rs`, and `tests/coordinator_sim.rs`,
//!   whose checker finds a watch fired twice, out of zxid order, after an
//!   answer that showed its change, or never for a change a read shows).
//! - **Nothing acknowledged is lost** while a majority keeps its disk: the
//!   term, vote and log are synced before any message that depends on them
//!   leaves ([`storage`]; the simulator's crashes lose what was not synced).
//!
//! ## How this differs from real Kafka
//!
//! Kafka kept this in ZooKeeper until 4.0, and now in KRaft ([KIP-500]): a
//! metadata log replicated by a Raft variant ([KIP-595]) whose followers
//! *pull* with `Fetch` and truncate by diverging epoch, with snapshots
//! fetched by `FetchSnapshot` ([KIP-630]), pre-vote ([KIP-996]) and dynamic
//! voters ([KIP-853]). This chapter follows the Raft paper instead (the
//! leader pushes `AppendEntries`, one `InstallSnapshot`, a fixed ensemble),
//! and serves a ZooKeeper-like tree rather than KRaft's typed metadata
//! records. Against ZooKeeper itself: no ACLs, quotas, TTL or container
//! nodes, no persistent watches, and ZooKeeper's own protocol (Zab) logs
//! the leader's results rather than the requests (the book compares them).
//! ZooKeeper keeps a session's writes in order with its TCP link to the
//! leader (a follower drops its clients when that link breaks); here a
//! write names the one it must follow.
//!
//! [KIP-500]: https://cwiki.apache.org/confluence/display/KAFKA/KIP-500%3A+Replace+ZooKeeper+with+a+Self-Managed+Metadata+Quorum
//! [KIP-595]: https://cwiki.apache.org/confluence/display/KAFKA/KIP-595%3A+A+Raft+Protocol+for+the+Metadata+Quorum
//! [KIP-630]: https://cwiki.apache.org/confluence/display/KAFKA/KIP-630%3A+Kafka+Raft+Snapshot
//! [KIP-853]: https://cwiki.apache.org/confluence/display/KAFKA/KIP-853%3A+KRaft+Controller+Membership+Changes
//! [KIP-996]: https://cwiki.apache.org/confluence/display/KAFKA/KIP-996%3A+Pre-Vote

pub mod client;
pub mod coordinator;
pub mod linearizability;
pub mod local;
pub mod node;
pub mod raft;
pub mod recipes;
pub mod shell;
pub mod sim;
pub mod state;
pub mod storage;
pub mod tree;
pub mod watches;
