//! # Chapter 8: a self-healing cluster
//!
//! Chapter 6's replication and chapter 7's coordinator become a cluster
//! that heals itself: brokers register in the coordinator, one of them is
//! elected controller, and when a broker's session ends the controller
//! moves the leadership of its partitions to replicas in their ISRs. Every
//! decision is stored in the coordinator before anyone acts on it, and
//! every decision carries an epoch, so a controller that was deposed
//! while it was paused is obeyed by nobody, the coordinator included.
//!
//! ## Layout
//!
//! - [`controller`]: one broker's part, sans-IO, on a chapter 7 session:
//!   registration (an ephemeral `/brokers/ids/<id>`), the race for
//!   `/controller` and its epoch, and, while elected, chapter 6's
//!   [`SimpleController`](ch06_replication::controller::SimpleController)
//!   loaded from the coordinator, its decisions stored with writes fenced
//!   by the controller epoch, its answers given from what is stored.
//! - [`fence`]: the broker's side: the newest controller epoch it has
//!   obeyed, and the refusal of older ones.
//! - [`state`]: where the cluster's state lives in the coordinator
//!   (Kafka's paths) and its JSON, read defensively.
//! - [`local`]: three coordinator servers and some brokers in one thread,
//!   for the example, the benchmark and the tests.
//! - [`protocol`]: sans-IO. The requests brokers and tools send the
//!   controller, and answers that carry its epoch.
//! - [`service`]: the tokio shell. [`service::ClusterBroker`], chapter
//!   6's replicated broker with one more layer: a task runs its
//!   [`controller::ClusterNode`] over a real coordinator session, the
//!   controller's requests go to it, and the broker inside reaches the
//!   elected controller through a fenced [`service::ClusterLink`].
//! - [`lab`]: the fault lab: coordinator servers and brokers (chapter 6's
//!   replicas beside a [`controller::ClusterNode`] each) in chapter 6's
//!   simulator, under partitions, crashes, pauses and clock jumps, every
//!   run checked; `src/bin/simulate-cluster.rs` runs any number of seeds
//!   or replays one.
//!
//! ## How this differs from real Kafka
//!
//! - This is the controller as Kafka ran it on ZooKeeper until 3.x (and
//!   as KIP-500 retired it): liveness is the broker's coordinator session
//!   (`zookeeper.session.timeout.ms`), the controller is whoever holds
//!   `/controller`, and the state lives in znodes. KRaft (KIP-500,
//!   KIP-631) keeps the state in the controllers' own Raft log instead,
//!   and brokers heartbeat the controller (`broker.session.timeout.ms`).
//!   The decisions themselves are chapter 6's, which already have KRaft's
//!   shape (AlterPartition with partition epochs, KIP-497; eligible leader
//!   replicas, KIP-966).
//! - Brokers learn their partitions' states from the answers to their
//!   heartbeats (KRaft's way of pulling metadata), not from
//!   `LeaderAndIsr`/`UpdateMetadata` requests pushed by the controller.
//!   Either way the answer carries the controller epoch, and a broker
//!   refuses an older one (`STALE_CONTROLLER_EPOCH`).
//! - One node per partition, `/brokers/partitions/<topic>-<p>`, holds its
//!   replicas and state; Kafka keeps the assignment in `/brokers/topics/<t>`
//!   and the state in `/brokers/topics/<t>/partitions/<p>/state`.
//! - A broker is alive while it holds a session; a new controller counts
//!   every member of `/brokers/ids` alive from the start, and a candidate
//!   to lead once it has heartbeated (with its run and its log's end). What tells it a
//!   broker restarted (and may have lost what it had not synced) is the
//!   run (incarnation) stored beside each ISR member: a heartbeat from
//!   another run fences the broker first. Kafka keeps broker epochs in the
//!   ISR for the same reason (KIP-903) and, on ZooKeeper, read a
//!   restart from the registration node's creation zxid (KIP-380).
//! - The controller writes every pending decision in one `multi`, one write
//!   at a time; Kafka's batches its ZooKeeper writes per request, and
//!   pipelines them.
//! - The controller takes its requests on the broker's one listener (as
//!   Kafka's ZooKeeper-era controller did; KRaft has
//!   `controller.listener.names`), and tools learn the cluster's state
//!   from a `DescribeCluster` of this course's (Kafka's DescribeCluster,
//!   key 60, names the controller and the brokers; partitions' leaders
//!   and ISRs come from Metadata there).

pub mod controller;
pub mod fence;
pub mod lab;
pub mod local;
pub mod protocol;
pub mod service;
pub mod state;
