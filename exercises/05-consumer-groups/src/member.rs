//! The group member: the consumer's side of the classic group protocol as a
//! sans-IO state machine, the twin of the broker's
//! [`GroupCoordinator`](crate::coordinator::GroupCoordinator). It decides
//! when to join, sync, heartbeat and leave, runs the assignor when it leads,
//! and tells the application's side which partitions to give up and take;
//! it never sends anything, sleeps or spawns. Time is a number of
//! milliseconds the caller passes in.
//!
//! Two callers drive it, as two threads drive Kafka's consumer coordinator:
//!
//! - **the network side** asks [`Member::next_request`] what to send (a
//!   JoinGroup, the leader's metadata lookup, a SyncGroup, a heartbeat, a
//!   LeaveGroup, or nothing until a time), sends it, and hands the answer
//!   back to [`Member::on_response`]. One request at a time.
//! - **the application side**, in each `poll`, calls [`Member::poll`] and
//!   does the [`Action`]s it returns: revoke these partitions (committing
//!   first or not), assign these, rejoin now, wait for the rebalance,
//!   surface this error.
//!
//! [`GroupConsumer`](crate::consumer::GroupConsumer) is the tokio shell that
//! does both; `tests/member.rs` does both by hand.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use ch03_partitions::TopicPartition;
use ch04_network::{ClientError, ErrorCode};

use crate::assignor::{Assignor, Members, PartitionCounts};
use crate::link::coordinator_unavailable;
use crate::protocol::{
    Assignment, CONSUMER_PROTOCOL, CommitPartition, HeartbeatRequest, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, OffsetCommitRequest, OffsetCommitResponse, Subscription,
    SyncGroupRequest, SyncGroupResponse, decode_metadata, encode_metadata,
};

/// How a member behaves, by Kafka's names (the group half of
/// [`GroupConsumerConfig`](crate::consumer::GroupConsumerConfig)).
#[derive(Clone)]
pub struct MemberConfig {
    /// `group.id`.
    pub group_id: String,
    /// `client.id`.
    pub client_id: String,
    /// `session.timeout.ms`.
    pub session_timeout: Duration,
    /// `heartbeat.interval.ms`.
    pub heartbeat_interval: Duration,
    /// `max.poll.interval.ms`, also the rebalance timeout it asks for.
    pub max_poll_interval: Duration,
    /// `partition.assignment.strategy`, preferred first.
    pub assignors: Vec<Arc<dyn Assignor>>,
}

/// Where a member is (Kafka's consumer coordinator names these UNJOINED,
/// PREPARING_REBALANCE, COMPLETING_REBALANCE and STABLE; the leader's
/// assignment step is its own state here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// Not taking part in a rebalance: before the first `poll`, or after
    /// being dropped or failing one. The next `poll` rejoins.
    Unjoined,
    /// A JoinGroup to send, or held by the coordinator (PREPARING_REBALANCE).
    Joining,
    /// The leader of `generation`: it learns the partition counts and runs
    /// the assignor.
    Assigning {
        /// The generation being formed.
        generation: i32,
    },
    /// A SyncGroup to send, or held until the leader's assignment comes
    /// (COMPLETING_REBALANCE).
    AwaitingSync {
        /// The generation being formed.
        generation: i32,
    },
    /// In a generation: heartbeats keep it there (STABLE). A cooperative
    /// member also reads its partitions in `Joining`, `Assigning` and
    /// `AwaitingSync`: it keeps them through a rebalance.
    Stable,
    /// Closed: nothing more to send.
    Left,
}

/// A request the network side must send, then report with
/// [`Member::on_response`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Answer with [`Response::Joined`].
    Join(JoinGroupRequest),
    /// The leader needs these topics' partition counts: answer with
    /// [`Response::Metadata`].
    Metadata(Vec<String>),
    /// Answer with [`Response::Synced`].
    Sync(SyncGroupRequest),
    /// Answer with [`Response::Heartbeat`].
    Heartbeat(HeartbeatRequest),
    /// Answer with [`Response::Left`].
    Leave(LeaveGroupRequest),
}

/// What the network side does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Send this, and report its answer.
    Send(Request),
    /// Nothing to send until this time (a heartbeat or the
    /// `max.poll.interval.ms` deadline), or, with `None`, until `poll`
    /// asks for a rejoin.
    Wait(Option<u64>),
}

/// The answer to a [`Request`], or why there is none.
#[derive(Debug)]
pub enum Response {
    /// To a [`Request::Join`].
    Joined(Result<JoinGroupResponse, ClientError>),
    /// To a [`Request::Metadata`]: each topic's partition count.
    Metadata(Vec<(String, Result<u32, ClientError>)>),
    /// To a [`Request::Sync`].
    Synced(Result<SyncGroupResponse, ClientError>),
    /// To a [`Request::Heartbeat`]: its error code.
    Heartbeat(Result<ErrorCode, ClientError>),
    /// A [`Request::Leave`] is done (whatever the answer: the member has
    /// gone either way).
    Left,
}

/// What `poll` must do, in order.
#[derive(Debug)]
pub enum Action {
    /// Give these partitions up: commit their positions first if `commit`
    /// (a dropped member's partitions are someone else's already, Kafka's
    /// `onPartitionsLost`), tell the listener, stop reading them.
    Revoke {
        /// The partitions.
        partitions: Vec<TopicPartition>,
        /// Whether to commit their positions first.
        commit: bool,
    },
    /// Read exactly `assigned` from now on; `added` are the new ones, to
    /// start from the group's committed offsets.
    Assign {
        /// Every partition of this member.
        assigned: Vec<TopicPartition>,
        /// Those it did not have.
        added: Vec<TopicPartition>,
    },
    /// The partitions are given up: call [`Member::rejoin`], and wake the
    /// network side to send the JoinGroup.
    Rejoin,
    /// Nothing to read until the rebalance is over: wait for the network
    /// side's next answer, and `poll` the machine again.
    AwaitRebalance,
    /// A rebalance failed: return this from `poll`. The next `poll` rejoins.
    Fail(ClientError),
}

/// The leader's work between JoinGroup and SyncGroup.
struct Plan {
    assignor: Arc<dyn Assignor>,
    members: Members,
}

/// One consumer's membership of its group.
pub struct Member {
    config: MemberConfig,
    /// Every assignor is cooperative: rebalances keep what they can.
    cooperative: bool,
    state: MemberState,
    /// Given by the coordinator (KIP-394); empty until then, and after
    /// being dropped.
    member_id: String,
    /// The generation this member last synced, which its commits and
    /// heartbeats carry; `None` when the group has dropped it.
    generation: Option<i32>,
    /// The subscribed topics, sorted.
    topics: Vec<String>,
    /// The partitions the application reads now.
    owned: Vec<TopicPartition>,
    /// What the JoinGroup's subscription says this member owns.
    claimed: Vec<TopicPartition>,
    /// The group wants this member to (re)join at the next `poll`.
    rejoin_needed: bool,
    /// A synced assignment the next `poll` takes.
    synced: Option<Vec<TopicPartition>>,
    /// An error the next `poll` returns.
    error: Option<ClientError>,
    /// The leader's plan, until the partition counts come.
    plan: Option<Plan>,
    /// The leader's assignments, for its SyncGroup.
    assignments: Vec<(String, Vec<u8>)>,
    /// A request is out; nothing else is sent until its answer.
    in_flight: bool,
    /// When `poll` last ran, for `max.poll.interval.ms`.
    last_poll: u64,
    next_heartbeat: u64,
}

impl Member {
    /// A member that has not joined yet; its first `poll` joins.
    pub fn new(config: MemberConfig, now: u64) -> Member {
        let cooperative = config.assignors.iter().all(|a| a.cooperative());
        Member {
            config,
            cooperative,
            state: MemberState::Unjoined,
            member_id: String::new(),
            generation: None,
            topics: Vec::new(),
            owned: Vec::new(),
            claimed: Vec::new(),
            rejoin_needed: true,
            synced: None,
            error: None,
            plan: None,
            assignments: Vec::new(),
            in_flight: false,
            last_poll: now,
            next_heartbeat: now,
        }
    }

    /// Where the member is.
    pub fn state(&self) -> MemberState {
        self.state
    }

    /// Whether rebalances are cooperative (KIP-429).
    pub fn cooperative(&self) -> bool {
        self.cooperative
    }

    /// This member's id and generation, once it is in one.
    pub fn generation(&self) -> Option<(String, i32)> {
        self.generation.map(|g| (self.member_id.clone(), g))
    }

    /// Reads these topics from the next `poll`, which rejoins.
    pub fn subscribe(&mut self, topics: Vec<String>) {
        self.topics = topics;
        self.topics.sort();
        self.rejoin_needed = true;
    }

    /// The application polls at `now`: what must it do before it reads?
    /// Take a synced assignment (a cooperative member revokes what left,
    /// and rejoins so its new owner gets it); start a rebalance the group
    /// wants (eager: give up everything first; a dropped member gives up
    /// everything without committing, and claims nothing); and wait while
    /// a rebalance leaves it nothing to read.
    pub fn poll(&mut self, now: u64) -> Vec<Action> {
        todo!("exercise `poll`: Note `last_poll`; a pending error is returned alone as `Action::Fail`. A synced assignment (`self.synced.take()`): `Revoke` (commit) what it no longer lists, and then rejoin, then `Assign` it, with the added ones. If a rejoin is needed and the member is Unjoined or Stable: decide what to claim, `Revoke` everything first if eager or dropped (committing unless dropped), then `Rejoin`. Finally `AwaitRebalance` when rejoining or mid-rebalance, unless cooperative with partitions to read.")
    }

    /// The application has done the [`Action::Rejoin`]'s revocations: the
    /// JoinGroup may go.
    pub fn rejoin(&mut self) {
        if matches!(self.state, MemberState::Unjoined | MemberState::Stable) {
            self.state = MemberState::Joining;
        }
    }

    /// What the network side sends next, at `now`. In a generation that is
    /// a heartbeat every `heartbeat.interval.ms`, unless the application
    /// has not polled for `max.poll.interval.ms`: then it is stuck, and
    /// the member leaves so others take over (as Kafka's does).
    pub fn next_request(&mut self, now: u64) -> Next {
        todo!("exercise `next_request`: One request at a time: with one in flight, `Wait(None)`. By state: Unjoined and Left wait (`Wait(None)`); Joining sends `self.join_request()`; Assigning asks for the `Metadata` of every topic the plan's members subscribe to; AwaitingSync sends a `SyncGroupRequest` (taking `self.assignments`); Stable leaves (and `self.lose()`s) once `now` is past `last_poll + max_poll_interval`, else sends a heartbeat when one is due (and schedules the next), else waits until the next heartbeat. Mark the request in flight.")
    }

    /// The answer to the request [`Member::next_request`] gave, at `now`.
    /// One for a state the member has left (it closed) changes nothing.
    pub fn on_response(&mut self, now: u64, response: Response) {
        self.in_flight = false;
        match (self.state, response) {
            (MemberState::Joining, Response::Joined(joined)) => self.joined(joined),
            (MemberState::Assigning { generation }, Response::Metadata(counts)) => {
                self.assign(generation, counts)
            }
            (MemberState::AwaitingSync { generation }, Response::Synced(synced)) => {
                self.synced(now, generation, synced)
            }
            (_, Response::Heartbeat(answer)) => self.heartbeat_answered(answer),
            _ => {}
        }
    }

    /// A JoinGroup's answer: in the generation (as leader or follower),
    /// or join again, or give up for now.
    fn joined(&mut self, joined: Result<JoinGroupResponse, ClientError>) {
        todo!("exercise `joined`: A coordinator that moved or cannot be reached (`coordinator_unavailable(&e)` for a transport error, `NotCoordinator` or `CoordinatorNotAvailable` for a code): stay `Joining`, to join again once the shell has found it. Any other transport error is `self.fail(e)`. On `ErrorCode::None` take the answer's member id; a follower clears `self.assignments` and awaits the sync of the answer's generation; the leader makes its `self.plan(&joined)` (an error fails) and goes to `Assigning`. `MemberIdRequired`: keep the id and join again; `RebalanceInProgress`: join again; `UnknownMemberId`: `self.lose()`; any other code fails with `broker_error(code, \"JoinGroup\")`.")
    }

    /// The leader decodes every member's subscription and finds the
    /// assignor the group chose; the partition counts come next.
    fn plan(&self, joined: &JoinGroupResponse) -> Result<Plan, ClientError> {
        let assignor = self
            .config
            .assignors
            .iter()
            .find(|a| a.name() == joined.protocol_name)
            .ok_or_else(|| {
                ClientError::Protocol(format!("unknown assignor {}", joined.protocol_name))
            })?;
        let mut members = Members::new();
        for (id, metadata) in &joined.members {
            let subscription: Subscription =
                decode_metadata(metadata).map_err(ClientError::Protocol)?;
            members.insert(id.clone(), subscription);
        }
        Ok(Plan {
            assignor: assignor.clone(),
            members,
        })
    }

    /// With the partition counts, the leader runs the assignor, and its
    /// SyncGroup carries the result.
    fn assign(&mut self, generation: i32, counts: Vec<(String, Result<u32, ClientError>)>) {
        let Some(plan) = self.plan.take() else {
            return self.fail(ClientError::Protocol("no assignment plan".into()));
        };
        let mut partitions = PartitionCounts::new();
        for (topic, count) in counts {
            match count {
                Ok(count) => {
                    partitions.insert(topic, count);
                }
                // A topic that does not exist (yet) has nothing to assign.
                Err(e) if e.code() == Some(ErrorCode::UnknownTopicOrPartition) => {}
                Err(e) => return self.fail(e),
            }
        }
        self.assignments = plan
            .assignor
            .assign(&plan.members, &partitions)
            .into_iter()
            .map(|(member, assignment)| (member, encode_metadata(&assignment)))
            .collect();
        self.state = MemberState::AwaitingSync { generation };
    }

    /// A SyncGroup's answer: the member is in `generation` with this
    /// assignment, which the next `poll` takes; or the group moved on
    /// while it synced, and it joins again.
    fn synced(
        &mut self,
        now: u64,
        generation: i32,
        synced: Result<SyncGroupResponse, ClientError>,
    ) {
        todo!("exercise `member_synced`: A coordinator that moved or cannot be reached (`coordinator_unavailable(&e)`, or the codes `NotCoordinator` and `CoordinatorNotAvailable`): back to `Joining`, to join the new one. Any other transport error is `self.fail(e)`. On `ErrorCode::None`, decode the answer's `assignment` as an `Assignment` (a decoding error fails with `ClientError::Protocol`): the member is now in `generation`, the flattened partitions wait in `self.synced` for the next `poll`, the state is `Stable`, and the next heartbeat is due one `heartbeat_interval` from `now`. `RebalanceInProgress` or `IllegalGeneration`: the group moved on, so back to `Joining`. `UnknownMemberId`: `self.lose()`. Any other code fails with `broker_error(code, \"SyncGroup\")`.")
    }

    /// A heartbeat's answer. A rebalance (or a generation that ended)
    /// means rejoin at the next `poll`, which first commits with the
    /// generation the member still has; an unknown member has been
    /// dropped. A lost heartbeat is not fatal: the session allows several.
    fn heartbeat_answered(&mut self, answer: Result<ErrorCode, ClientError>) {
        todo!("exercise `heartbeat_answered`: `None`, a transport error, `NotCoordinator` and `CoordinatorNotAvailable` change nothing (the shell finds the coordinator again, and the next heartbeat goes there). `UnknownMemberId`: `self.lose()`. Any other code, while Stable, means rejoin at the next `poll` (`rejoin_needed`); in any other state, nothing (it is joining already).")
    }

    /// Closes the member: the LeaveGroup to send, if it ever got an id,
    /// so the others take over its partitions at once.
    pub fn close(&mut self) -> Option<LeaveGroupRequest> {
        self.state = MemberState::Left;
        (!self.member_id.is_empty()).then(|| LeaveGroupRequest {
            group_id: self.config.group_id.clone(),
            member_id: self.member_id.clone(),
        })
    }

    /// An OffsetCommit of these positions, with this member's generation
    /// (or -1 and the id it has, out of a generation: the coordinator
    /// refuses that, and the next owner re-reads).
    pub fn commit_request(&self, offsets: &[(TopicPartition, u64)]) -> OffsetCommitRequest {
        let mut topics: BTreeMap<String, Vec<CommitPartition>> = BTreeMap::new();
        for (tp, offset) in offsets {
            topics
                .entry(tp.topic.clone())
                .or_default()
                .push(CommitPartition {
                    partition: tp.partition,
                    offset: *offset,
                    metadata: String::new(),
                });
        }
        OffsetCommitRequest {
            group_id: self.config.group_id.clone(),
            generation_id: self.generation.unwrap_or(-1),
            member_id: self.member_id.clone(),
            topics: topics.into_iter().collect(),
        }
    }

    fn join_request(&self) -> JoinGroupRequest {
        let metadata = encode_metadata(&Subscription {
            topics: self.topics.clone(),
            owned: self.claimed.clone(),
        });
        JoinGroupRequest {
            group_id: self.config.group_id.clone(),
            session_timeout_ms: millis(self.config.session_timeout) as u32,
            rebalance_timeout_ms: millis(self.config.max_poll_interval) as u32,
            member_id: self.member_id.clone(),
            client_id: self.config.client_id.clone(),
            protocol_type: CONSUMER_PROTOCOL.into(),
            protocols: self
                .config
                .assignors
                .iter()
                .map(|a| (a.name().to_string(), metadata.clone()))
                .collect(),
        }
    }

    /// The group has dropped this member (or it left): its partitions are
    /// someone else's, and it must join again as a new member.
    fn lose(&mut self) {
        self.member_id.clear();
        self.generation = None;
        self.plan = None;
        self.synced = None;
        self.state = MemberState::Unjoined;
        self.rejoin_needed = true;
    }

    /// A rebalance failed: `poll` says so, and the next one rejoins. The
    /// member keeps its generation and, if cooperative, its partitions.
    fn fail(&mut self, error: ClientError) {
        self.error = Some(error);
        self.plan = None;
        self.state = MemberState::Unjoined;
        self.rejoin_needed = true;
    }
}

/// The first partition error of a commit's answer, if any.
pub fn commit_result(response: OffsetCommitResponse) -> Result<(), ClientError> {
    for (topic, partitions) in response.topics {
        for (partition, error) in partitions {
            if error != ErrorCode::None {
                return Err(broker_error(
                    error,
                    &format!("committing {topic}-{partition}"),
                ));
            }
        }
    }
    Ok(())
}

fn broker_error(code: ErrorCode, what: &str) -> ClientError {
    ClientError::Broker {
        code,
        message: what.to_string(),
    }
}

fn millis(d: Duration) -> u64 {
    d.as_millis() as u64
}
