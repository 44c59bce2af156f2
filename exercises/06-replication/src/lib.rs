//! # Chapter 6: replication
//!
//! A partition survives the loss of a broker because its log is copied to
//! followers on other brokers, which *pull* it from the leader. A write is
//! committed once every in-sync replica has it: the high watermark passes
//! it, `acks=all` producers hear of it, and consumers may read it. When a
//! leader fails, the controller makes an in-sync follower the leader, with
//! a new leader epoch; and leader epochs let every other follower cut
//! exactly the records the new leader never had.
//!
//! The protocol is a set of sans-IO state machines, run two ways: by a
//! deterministic simulator that crashes, partitions and restarts them
//! thousands of times with a checker reading each run's history, and by a
//! tokio shell around chapter 5's broker.
//!
//! ## Layout
//!
//! - [`protocol`]: sans-IO. The messages between followers and leaders
//!   (replica fetch, OffsetsForLeaderEpoch) and between brokers and the
//!   controller (heartbeat, AlterPartition), with Kafka's names; the
//!   controller's [`protocol::PartitionState`]. Start reading here.
//! - [`epoch`]: sans-IO. The leader-epoch cache (KIP-101): which epoch
//!   wrote which offsets, and where an epoch ends.
//! - [`replica`]: sans-IO. [`replica::Partition`], one partition's replica
//!   on one broker: the leader's view of its followers, the ISR rules and
//!   the high watermark; the follower's fetch loop and truncation by epoch.
//! - [`manager`]: sans-IO. [`manager::ReplicaManager`], a broker's
//!   replicas: the purgatory where `acks=all` produces wait, the requests
//!   its followers want sent, the checkpoints.
//! - [`controller`]: sans-IO. The [`controller::Controller`] interface and
//!   [`controller::SimpleController`]: brokers' sessions, leader election
//!   from the ISR and the eligible replicas (KIP-966), AlterPartition.
//! - [`storage`]: the [`storage::ReplicaLog`] and [`storage::Storage`]
//!   traits the state machines use instead of files; chapter 2's `Log` is a
//!   `ReplicaLog`.
//! - [`memory`]: the simulator's disk, in memory, which loses what was not
//!   synced when it crashes.
//! - [`sim`]: the deterministic simulator, generic over any sans-IO node:
//!   a seeded event loop, a virtual clock, a network that delays, drops,
//!   duplicates, reorders and partitions, crashes, clock jumps, a random
//!   nemesis, and a runner for many seeds. Chapters 7 and 8 reuse it.
//! - [`lab`]: the fault lab: a three-broker partition, a producer and a
//!   consumer as simulator nodes, and the checker of every run's history.
//!   The `simulate` binary runs it.
//! - [`disk`]: [`storage::Storage`] on a real data directory: chapter 3's
//!   store, and Kafka's `leader-epoch-checkpoint` and
//!   `replication-offset-checkpoint` files, replaced atomically.
//! - [`service`]: the tokio shell. [`service::ReplicatedBroker`], chapter
//!   5's broker with the replica manager inside: `acks=all` produces waiting
//!   for the purgatory, consumer fetches capped at the high watermark, held
//!   follower fetches; heartbeats and the follower fetch loop as its
//!   background work. It also makes chapter 5's group coordinator a
//!   cluster's: `__consumer_offsets` is a replicated topic, a group's
//!   coordinator is the leader of its partition of it, loaded and unloaded
//!   as that leadership moves, and a commit is answered once replicated.
//! - [`controller_service`]: the controller as a service of its own.
//! - [`link`]: [`link::ControllerLink`], how a broker reaches its
//!   controller: here [`link::FixedController`], one address; chapter 8
//!   plugs in the elected controller.
//! - [`client`]: [`client::ClusterClient`], a small client that follows a
//!   partition's leader (found by chapter 4's `Leaders`), one call at a
//!   time, and creates replicated topics.
//! - `src/bin/replica-node.rs`: a broker, a controller, or both, as a
//!   process.
//!
//! ## How this differs from real Kafka
//!
//! - **The controller is one process, its state in memory**
//!   ([`controller::SimpleController`]). Kafka's controller (KRaft, KIP-500)
//!   is a Raft quorum with its state in a replicated metadata log; chapter
//!   8 replaces this one with an elected controller on chapter 7's
//!   coordinator. Brokers learn partition state from heartbeat answers,
//!   where KRaft brokers replay the metadata log.
//! - **The follower's fetch has its own API key** and body; Kafka uses the
//!   Fetch API with the follower's `replica_id`. Batches carry their leader
//!   epoch beside them, not in the batch header (`partitionLeaderEpoch`),
//!   because chapter 2's batch format has no such field.
//! - **A follower asks OffsetsForLeaderEpoch before fetching** (KIP-101,
//!   KIP-279); Kafka 2.7+ instead sends the last fetched epoch in every
//!   fetch and the leader answers with a diverging epoch (KIP-595's fetch,
//!   KIP-320's checks).
//! - **Eligible leader replicas (KIP-966) are always on**, with
//!   `min.insync.replicas` one setting for the cluster rather than per
//!   topic; and the high watermark does not advance while the ISR is
//!   below it (as with KIP-966). Unclean recovery of the last-known
//!   eligible replicas waits for all of them and picks the longest log of
//!   every live replica; Kafka's `unclean.recovery.strategy` has more
//!   choices.
//! - **`replica.lag.time.max.ms` is the only ISR rule** (as in Kafka since
//!   0.9); no follower fetching from the closest replica (KIP-392), no
//!   reassignment, no preferred-leader election, no rack awareness.
//! - **One fetch per follower per leader, answered at once in the state
//!   machine**; the tokio shell holds it (long polling). Kafka has
//!   `num.replica.fetchers` threads per source broker and fetch sessions
//!   (KIP-227).
//! - **A connection goes on while its `acks=all` produce waits**: the batch
//!   is appended, and the answer comes later (chapter 4's
//!   `Handled::Later`) while the connection serves the next request.
//!   Kafka's broker mutes the connection until the answer is sent, so one
//!   connection moves one batch per replication round trip; Redpanda
//!   pipelines as this chapter does.
//! - **Only the committed offsets are replicated.** `__consumer_offsets`
//!   is made through the controller on the first FindCoordinator (with
//!   `offsets.topic.num.partitions` and `offsets.topic.replication.factor`,
//!   as Kafka makes it), and an OffsetCommit is answered once its records
//!   are committed. Kafka writes each group's members and generation there
//!   too, so a new coordinator knows them; here the members join it again.
//!   Commits go one at a time per offsets partition (Kafka overlaps them
//!   and keeps the one later in the log). The replicated topic is not
//!   cleaned as chapter 5 cleans its local one: it has chapter 3's default
//!   retention, so the commits of a group idle for 7 days go, as Kafka's
//!   `offsets.retention.minutes` (7 days) expires them; Kafka also
//!   compacts the topic.

pub mod client;
pub mod controller;
pub mod controller_service;
pub mod disk;
pub mod epoch;
pub mod lab;
pub mod link;
pub mod manager;
pub mod memory;
pub mod protocol;
pub mod replica;
pub mod service;
pub mod sim;
pub mod storage;
