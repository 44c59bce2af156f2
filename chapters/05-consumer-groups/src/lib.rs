//! # Chapter 5: consumer groups
//!
//! A consumer group shares topics' partitions among its members, so each
//! partition is read by exactly one member at a time; when members come and
//! go, the group *rebalances*; and the group's progress, its committed
//! offsets, lives in the log itself. This chapter follows Kafka's classic
//! group protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup), so that
//! chapter 11 can put Kafka's wire format on the same state machine.
//!
//! ## Layout
//!
//! - [`protocol`]: sans-IO. The group APIs' messages with Kafka's API key
//!   numbers, and the consumer protocol's [`protocol::Subscription`] and
//!   [`protocol::Assignment`].
//! - [`coordinator`]: sans-IO. [`coordinator::GroupCoordinator`], the state
//!   machine of every group: members, generations, the five states, session
//!   and rebalance timeouts, driven by a clock the caller passes in; and
//!   which offset commits to accept.
//! - [`assignor`]: sans-IO. The [`assignor::Assignor`] trait and the range,
//!   round-robin, sticky and cooperative-sticky assignors, which the group
//!   *leader* (a client) runs.
//! - [`offsets`]: [`offsets::OffsetStore`], committed offsets as records in
//!   the internal topic `__consumer_offsets`, rebuilt on start and cleaned;
//!   its OffsetFetch answers are sans-IO lookups.
//! - [`member`]: sans-IO. [`member::Member`], the consumer's side of the
//!   protocol as a state machine ([`member::MemberState`]): it says which
//!   request to send next (join, the leader's metadata lookup and
//!   assignment, sync, heartbeat, leave) and what `poll` must do (revoke,
//!   assign, rejoin, wait, fail), eager or cooperative, driven by a clock
//!   the caller passes in. The twin of the coordinator.
//! - [`service`]: [`service::GroupBroker`], the thin tokio shell: chapter
//!   4's broker with the coordinator inside, behind chapter 4's server. It
//!   holds joins and syncs, ticks the clock, appends what the coordinator
//!   accepts to the offsets topic, and replies. Seams for chapter 6: which
//!   offsets partitions' groups it coordinates (loaded and unloaded as
//!   their leadership moves), and a commit decided here but stored by the
//!   caller ([`service::PendingCommit`]).
//! - [`link`]: [`link::CoordinatorLink`], how a group's clients reach its
//!   coordinator: FindCoordinator to any broker, and again when an answer
//!   says the coordinator moved or a call gets no answer.
//! - [`consumer`]: [`consumer::GroupConsumer`], the tokio shell around a
//!   [`member::Member`]: a driver task sends what the member asks for, and
//!   `poll` does its actions with chapter 4's consumer, the rebalance
//!   listener, and automatic and manual commits.
//! - [`admin`]: [`admin::GroupAdmin`], list and describe groups and their
//!   committed offsets (what `kfs groups` shows).
//!
//! ## How this differs from real Kafka
//!
//! - **The classic protocol only.** Kafka 4.0 made KIP-848's protocol
//!   generally available and on by default in the broker (a consumer still
//!   chooses it: `group.protocol` defaults to `classic`): the broker
//!   computes assignments and members converge one partition at a time
//!   through their heartbeats, with no group-wide barrier. The book's
//!   chapter compares the two.
//! - **Simpler sticky assignors.** Both eager rebalancing and cooperative
//!   rebalancing (KIP-429, `cooperative-sticky`) are built, but `sticky`
//!   and `cooperative-sticky` balance greedily: balanced when members
//!   subscribe to the same topics, not always when they differ, where
//!   Kafka's shared sticky algorithm reassigns until it is. There is no
//!   `RebalanceInProgressException`: a commit during a cooperative
//!   rebalance fails with `REBALANCE_IN_PROGRESS` or `ILLEGAL_GENERATION`.
//! - **No static membership** (KIP-345, `group.instance.id`) and no
//!   `group.initial.rebalance.delay.ms` (Kafka waits 3 s for more members
//!   before forming a new group's first generation).
//! - **Only offsets are persisted.** Kafka also writes each group's
//!   generation and members to `__consumer_offsets`; here a broker restart
//!   forgets them, and members simply rejoin.
//! - **Cleaning is not compaction.** `__consumer_offsets` is cleaned by
//!   writing the latest values again and deleting older segments (see
//!   [`offsets`]); there is no `offsets.retention.minutes` expiry and no
//!   DeleteGroups or OffsetDelete.
//! - **One broker coordinates every group**; FindCoordinator answers with
//!   itself. (The clients already find the coordinator and follow it when
//!   it moves; chapter 6 makes it move: the leader of the group's
//!   partition of a replicated `__consumer_offsets`.) Member ids are the
//!   client id, a random number the coordinator drew when it started, and
//!   a counter, where Kafka's end in a UUID. `offsets.topic.num.partitions` defaults to 10 (Kafka: 50), and
//!   a group's partition of it is chosen with chapter 3's murmur2, where
//!   Kafka takes `abs(groupId.hashCode) % offsets.topic.num.partitions`
//!   (Java's `String.hashCode`).
//!
//! ## Example
//!
//! A group broker on a free loopback port, and a consumer in group
//! `billing` reading a topic the group shares:
//!
//! ```
//! use std::time::Duration;
//!
//! use ch02_segments::Record;
//! use ch03_partitions::TopicStore;
//! use ch04_network::{Admin, Producer, ProducerConfig, ServerConfig};
//! use ch05_consumer_groups::{GroupConfig, GroupConsumer, GroupConsumerConfig, service};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let (store, _) = TopicStore::open(dir.path())?;
//! let server = service::bind(
//!     "127.0.0.1:0".parse()?,
//!     store,
//!     ServerConfig::default(),
//!     GroupConfig::default(),
//! )
//! .await?;
//! let addr = server.local_addr().to_string();
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let broker = tokio::spawn(server.run(async {
//!     let _ = stopped.await;
//! }));
//!
//! Admin::connect(&addr, Duration::from_secs(5)).await?.create_topic("invoices", 2, vec![]).await?;
//! let producer = Producer::connect(&addr, ProducerConfig::default()).await?;
//! producer.send("invoices", Record::new("INV-1")).await?.await?;
//!
//! let mut config = GroupConsumerConfig::new("billing");
//! config.consumer.auto_offset_reset = ch04_network::OffsetReset::Earliest;
//! let mut consumer = GroupConsumer::connect(&addr, config).await?;
//! consumer.subscribe(["invoices"]);
//! // The first poll joins the group; alone in it, this member gets both
//! // partitions.
//! let records = consumer.poll(Duration::from_secs(5)).await?;
//! assert_eq!(records[0].record.value, b"INV-1");
//! assert_eq!(consumer.assignment().len(), 2);
//! consumer.commit_sync().await?;
//! consumer.close().await?; // leaves the group at once
//!
//! let _ = stop.send(());
//! broker.await??;
//! # Ok(())
//! # }
//! ```

pub mod admin;
pub mod assignor;
pub mod consumer;
pub mod coordinator;
pub mod link;
pub mod member;
pub mod offsets;
pub mod protocol;
pub mod service;

pub use admin::{GroupAdmin, GroupInfo, MemberInfo};
pub use assignor::{
    Assignor, CooperativeStickyAssignor, RangeAssignor, RoundRobinAssignor, StickyAssignor,
};
pub use consumer::{GroupConsumer, GroupConsumerConfig, RebalanceListener};
pub use coordinator::{CommitDecision, CoordinatorConfig, GroupCoordinator, GroupState};
pub use member::{Member, MemberConfig, MemberState};
pub use offsets::{OffsetStore, OffsetsConfig};
pub use service::{BindError, GroupBroker, GroupConfig, bind};
