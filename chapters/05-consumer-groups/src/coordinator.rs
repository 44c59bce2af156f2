//! The group coordinator: Kafka's classic group protocol as a sans-IO state
//! machine. Every call takes the time (`now`, in ms) and returns what to
//! answer; nothing here sleeps, spawns or touches a socket, so the tests
//! drive hours of timeouts in microseconds.
//!
//! JoinGroup and SyncGroup are *held*: a join waits until every member has
//! (re)joined, a follower's sync until the leader hands in the assignment.
//! Such calls take a [`ReplyTo`] token and are answered later, by whichever
//! call completes them (another member's join, the leader's sync, a timeout
//! in [`GroupCoordinator::tick`]), as `(token, Reply)` pairs the shell
//! delivers.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use ch04_network::ErrorCode;

use crate::offsets::Commit;
use crate::protocol::{
    DescribeGroupsResponse, GroupDescription, HeartbeatRequest, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, MemberDescription, OffsetCommitRequest,
    OffsetCommitResponse, SyncGroupRequest, SyncGroupResponse,
};

/// Kafka's `offset.metadata.max.bytes`: the most text a commit may carry.
pub const MAX_METADATA_BYTES: usize = 4096;

/// What an OffsetCommit comes to: the answer, and the positions to store.
/// The shell appends `accepted` to the offsets topic, and only then sends
/// `response`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitDecision {
    /// The answer, every partition `None` that is in `accepted`.
    pub response: OffsetCommitResponse,
    /// The positions to store, in the request's order.
    pub accepted: Vec<Commit>,
}

impl CommitDecision {
    /// Storing `accepted` failed with `code`: the answer says so for each
    /// of them, instead of `None`.
    pub fn storing_failed(&mut self, code: ErrorCode) {
        for (_, partitions) in &mut self.response.topics {
            for (_, error) in partitions.iter_mut().filter(|(_, e)| *e == ErrorCode::None) {
                *error = code;
            }
        }
    }
}

/// Identifies a held request, so its answer can be sent when it is ready.
pub type ReplyTo = u64;

/// The answer to a held request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// To a JoinGroup.
    Join(JoinGroupResponse),
    /// To a SyncGroup.
    Sync(SyncGroupResponse),
}

/// Answers to deliver: a call can complete other members' held calls.
pub type Replies = Vec<(ReplyTo, Reply)>;

/// The coordinator's limits, by Kafka's names.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// `group.min.session.timeout.ms` (6 s).
    pub min_session_timeout: Duration,
    /// `group.max.session.timeout.ms` (30 min).
    pub max_session_timeout: Duration,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            min_session_timeout: Duration::from_secs(6),
            max_session_timeout: Duration::from_secs(30 * 60),
        }
    }
}

// ANCHOR: state
/// Where a group is in its life (Kafka's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members (it may still have committed offsets).
    Empty,
    /// Waiting for every member to (re)join, up to the rebalance timeout.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignment.
    CompletingRebalance,
    /// Every member has its assignment; heartbeats keep it so.
    Stable,
    /// Removed. (Kept for `describe`'s answer about unknown groups.)
    Dead,
}
// ANCHOR_END: state

impl fmt::Display for GroupState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

struct Member {
    client_id: String,
    session_timeout: u64,
    rebalance_timeout: u64,
    /// `(assignor name, metadata)`, in the member's order of preference.
    protocols: Vec<(String, Vec<u8>)>,
    /// Its part of the current generation's assignment.
    assignment: Vec<u8>,
    /// The last time it showed it was alive (a join, sync, heartbeat or
    /// commit).
    last_seen: u64,
    /// Its JoinGroup, held until the group forms.
    awaiting_join: Option<ReplyTo>,
    /// Its SyncGroup, held until the leader's assignment comes.
    awaiting_sync: Option<ReplyTo>,
}

impl Member {
    fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|(name, _)| name == protocol)
    }

    fn metadata(&self, protocol: &str) -> Vec<u8> {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

struct Group {
    state: GroupState,
    generation: i32,
    protocol_type: String,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Member ids handed out by a first join (KIP-394), with when they
    /// expire if the member never comes back with them.
    pending: BTreeMap<String, u64>,
    /// When a rebalance stops waiting for members that have not rejoined.
    rebalance_deadline: u64,
}

/// A JoinGroup answer that carries only an error.
fn join_error(error: ErrorCode, member_id: &str) -> Reply {
    Reply::Join(JoinGroupResponse {
        error,
        generation_id: -1,
        protocol_name: String::new(),
        leader: String::new(),
        member_id: member_id.to_string(),
        members: Vec::new(),
    })
}

fn sync_error(error: ErrorCode) -> Reply {
    Reply::Sync(SyncGroupResponse {
        error,
        assignment: Vec::new(),
    })
}

impl Group {
    fn new(protocol_type: &str) -> Group {
        Group {
            state: GroupState::Empty,
            generation: 0,
            protocol_type: protocol_type.to_string(),
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: BTreeMap::new(),
            rebalance_deadline: 0,
        }
    }

    // ANCHOR: prepare
    /// Starts a rebalance: every member must join again. Members waiting
    /// for an assignment of the generation that is ending are told so.
    fn prepare_rebalance(&mut self, now: u64) -> Replies {
        let mut replies = Vec::new();
        for member in self.members.values_mut() {
            if let Some(to) = member.awaiting_sync.take() {
                replies.push((to, sync_error(ErrorCode::RebalanceInProgress)));
            }
        }
        let wait = self.members.values().map(|m| m.rebalance_timeout).max();
        self.rebalance_deadline = now + wait.unwrap_or(0);
        self.state = GroupState::PreparingRebalance;
        replies
    }
    // ANCHOR_END: prepare

    // ANCHOR: complete_join
    /// Forms the next generation if every member has rejoined, or, with
    /// `deadline_passed`, without those that have not. Answers every held
    /// join: the leader's answer lists the members and their metadata.
    fn try_complete_join(&mut self, now: u64, deadline_passed: bool) -> Replies {
        // exercise-hole: complete_join | Unless every member has `awaiting_join`, return nothing, or (with `deadline_passed`) first remove the members that have not. Then bump the generation; with no members left, become Empty (no protocol, no leader) and return. Otherwise choose the protocol (`self.choose_protocol()`), keep the leader if it is still a member (else take the first), become CompletingRebalance, and answer each member's held join (`awaiting_join.take()`), resetting its assignment and `last_seen`: the leader's answer lists every member's id with its metadata for the protocol; the others' an empty list.
        // exercise-hint: A join completes when every member has rejoined, or when the rebalance timeout passes (`deadline_passed`): then members that did not rejoin are removed, and the generation moves on even if nobody is left.
        // exercise-hint: The leader needs every member's subscription to run the assignor, so only its join response lists the members (id and metadata for the chosen protocol); followers get an empty list and wait for the sync.
        let all_joined = self.members.values().all(|m| m.awaiting_join.is_some());
        if !all_joined {
            if !deadline_passed {
                return Vec::new();
            }
            self.members.retain(|_, m| m.awaiting_join.is_some());
        }
        self.generation += 1;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.leader = None;
            return Vec::new();
        }
        let protocol = self.choose_protocol();
        let leader = match &self.leader {
            Some(leader) if self.members.contains_key(leader) => leader.clone(),
            _ => self.members.keys().next().expect("not empty").clone(),
        };
        let everyone: Vec<(String, Vec<u8>)> = self
            .members
            .iter()
            .map(|(id, m)| (id.clone(), m.metadata(&protocol)))
            .collect();
        let mut replies = Vec::new();
        for (id, member) in &mut self.members {
            member.assignment.clear();
            member.last_seen = now;
            let Some(to) = member.awaiting_join.take() else {
                continue;
            };
            let response = JoinGroupResponse {
                error: ErrorCode::None,
                generation_id: self.generation,
                protocol_name: protocol.clone(),
                leader: leader.clone(),
                member_id: id.clone(),
                members: if *id == leader {
                    everyone.clone()
                } else {
                    Vec::new()
                },
            };
            replies.push((to, Reply::Join(response)));
        }
        self.state = GroupState::CompletingRebalance;
        self.protocol = Some(protocol);
        self.leader = Some(leader);
        replies
        // exercise-end
    }
    // ANCHOR_END: complete_join

    /// The protocol every member supports that most members prefer (ties:
    /// the first member's order). Joins that share no protocol with the
    /// group are refused, so there always is one.
    fn choose_protocol(&self) -> String {
        let first = self.members.values().next().expect("not empty");
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(name, _)| name)
            .filter(|name| self.members.values().all(|m| m.supports(name)))
            .collect();
        let votes = |name: &String| {
            self.members
                .values()
                .filter(|m| {
                    m.protocols
                        .iter()
                        .map(|(n, _)| n)
                        .find(|n| candidates.contains(n))
                        == Some(name)
                })
                .count()
        };
        let mut best: Option<(&String, usize)> = None;
        for name in &candidates {
            let v = votes(name);
            if best.is_none_or(|(_, most)| v > most) {
                best = Some((name, v));
            }
        }
        best.map(|(name, _)| name.clone()).unwrap_or_default()
    }

    /// After a member left or timed out: the group rebalances without it.
    fn member_removed(&mut self, now: u64) -> Replies {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                let mut replies = self.prepare_rebalance(now);
                replies.extend(self.try_complete_join(now, false));
                replies
            }
            GroupState::PreparingRebalance => self.try_complete_join(now, false),
            GroupState::Empty | GroupState::Dead => Vec::new(),
        }
    }

    /// Removes a member, answering its held calls with `error`.
    fn remove_member(&mut self, id: &str, error: ErrorCode, replies: &mut Replies) {
        if let Some(member) = self.members.remove(id) {
            if let Some(to) = member.awaiting_join {
                replies.push((to, join_error(error, id)));
            }
            if let Some(to) = member.awaiting_sync {
                replies.push((to, sync_error(error)));
            }
        }
    }
}

/// Every group this broker coordinates.
pub struct GroupCoordinator {
    config: CoordinatorConfig,
    groups: BTreeMap<String, Group>,
    /// Chosen at random when the coordinator starts, and part of every
    /// member id it hands out: when a group's coordinator moves to
    /// another broker (chapter 6), an id from the old one can never be
    /// mistaken for one the new one gave. (Kafka's ids end in a UUID.)
    instance: u32,
    /// For member ids: unique within this coordinator's life.
    next_member: u64,
}

impl GroupCoordinator {
    /// A coordinator with no groups.
    pub fn new(config: CoordinatorConfig) -> GroupCoordinator {
        GroupCoordinator {
            config,
            groups: BTreeMap::new(),
            instance: fastrand::u32(..),
            next_member: 1,
        }
    }

    // ANCHOR: join
    /// A JoinGroup. Errors are answered at once; a good join is held until
    /// the group forms, which this call or a later one completes.
    pub fn join(&mut self, now: u64, request: JoinGroupRequest, reply: ReplyTo) -> Replies {
        let error = |code| vec![(reply, join_error(code, &request.member_id))];
        if request.group_id.is_empty() {
            return error(ErrorCode::InvalidGroupId);
        }
        if request.protocol_type.is_empty() || request.protocols.is_empty() {
            return error(ErrorCode::InconsistentGroupProtocol);
        }
        let session = u64::from(request.session_timeout_ms);
        let allowed = self.config.min_session_timeout.as_millis() as u64
            ..=self.config.max_session_timeout.as_millis() as u64;
        if !allowed.contains(&session) {
            return error(ErrorCode::InvalidSessionTimeout);
        }
        let group = self
            .groups
            .entry(request.group_id.clone())
            .or_insert_with(|| Group::new(&request.protocol_type));
        if group.members.is_empty() {
            group.protocol_type = request.protocol_type.clone();
        }
        // The member must share the group's protocol type and at least one
        // assignor with every other member.
        let others_support = |name: &String| {
            group
                .members
                .iter()
                .filter(|(id, _)| **id != request.member_id)
                .all(|(_, m)| m.supports(name))
        };
        if group.protocol_type != request.protocol_type
            || !request
                .protocols
                .iter()
                .any(|(name, _)| others_support(name))
        {
            return error(ErrorCode::InconsistentGroupProtocol);
        }
        // ANCHOR_END: join
        // ANCHOR: join_member
        if request.member_id.is_empty() {
            // KIP-394: hand out an id and ask the member to join again
            // with it, so a member whose first answer is lost does not
            // linger in the group as a stranger.
            let id = format!(
                "{}-{:08x}-{}",
                request.client_id, self.instance, self.next_member
            );
            self.next_member += 1;
            group.pending.insert(id.clone(), now + session);
            return vec![(reply, join_error(ErrorCode::MemberIdRequired, &id))];
        }
        let known = group.members.contains_key(&request.member_id);
        if !known && group.pending.remove(&request.member_id).is_none() {
            return error(ErrorCode::UnknownMemberId);
        }
        let member = group
            .members
            .entry(request.member_id.clone())
            .or_insert_with(|| Member {
                client_id: String::new(),
                session_timeout: 0,
                rebalance_timeout: 0,
                protocols: Vec::new(),
                assignment: Vec::new(),
                last_seen: now,
                awaiting_join: None,
                awaiting_sync: None,
            });
        member.client_id = request.client_id;
        member.session_timeout = session;
        member.rebalance_timeout = u64::from(request.rebalance_timeout_ms);
        member.protocols = request.protocols;
        member.last_seen = now;
        let mut replies = Vec::new();
        // A join sent again (the client timed out and retried): the old
        // one is answered, the new one held.
        if let Some(old) = member.awaiting_join.replace(reply) {
            replies.push((
                old,
                join_error(ErrorCode::RebalanceInProgress, &request.member_id),
            ));
        }
        if group.state != GroupState::PreparingRebalance {
            replies.extend(group.prepare_rebalance(now));
        }
        replies.extend(group.try_complete_join(now, false));
        replies
    }
    // ANCHOR_END: join_member

    // ANCHOR: sync
    /// A SyncGroup. The leader's carries the assignment, which completes
    /// every member's held sync; a follower's is held until then.
    pub fn sync(&mut self, now: u64, request: SyncGroupRequest, reply: ReplyTo) -> Replies {
        // exercise-hole: sync | Check, in order: the group and the member exist (else `UnknownMemberId`), the generation is the group's (else `IllegalGeneration`), a follower sends no assignments (else `InvalidRequest`); then note `last_seen`. By state: Empty/Dead `UnknownMemberId`; PreparingRebalance `RebalanceInProgress`; Stable answers at once with the member's assignment; CompletingRebalance holds the sync (`awaiting_sync`), and the leader's stores every member's assignment, answers every held sync, and makes the group Stable.
        // exercise-hint: Errors are answered at once (`sync_error`, as in `join`). A held sync sent again answers the old one with `RebalanceInProgress`, as a retried join does. Only the leader's sync completes the generation, and it must answer the followers that synced before it as well as itself.
        // exercise-hint: In CompletingRebalance: `if let Some(old) = member.awaiting_sync.replace(reply)`; if leader, turn `request.assignments` into a `BTreeMap`, then for each `(id, member)` set `member.assignment = assignments.remove(id).unwrap_or_default()` (left out: nothing) and answer `member.awaiting_sync.take()` with `SyncGroupResponse { error: None, assignment }`; then `group.state = GroupState::Stable`.
        let error = |code| vec![(reply, sync_error(code))];
        let Some(group) = self.groups.get_mut(&request.group_id) else {
            return error(ErrorCode::UnknownMemberId);
        };
        let Some(member) = group.members.get_mut(&request.member_id) else {
            return error(ErrorCode::UnknownMemberId);
        };
        if request.generation_id != group.generation {
            return error(ErrorCode::IllegalGeneration);
        }
        let is_leader = group.leader.as_deref() == Some(request.member_id.as_str());
        if !is_leader && !request.assignments.is_empty() {
            // Only the leader assigns; a follower that sends an assignment
            // is confused, and saying so beats silently ignoring it.
            return error(ErrorCode::InvalidRequest);
        }
        member.last_seen = now;
        match group.state {
            GroupState::Empty | GroupState::Dead => error(ErrorCode::UnknownMemberId),
            GroupState::PreparingRebalance => error(ErrorCode::RebalanceInProgress),
            GroupState::Stable => vec![(
                reply,
                Reply::Sync(SyncGroupResponse {
                    error: ErrorCode::None,
                    assignment: member.assignment.clone(),
                }),
            )],
            GroupState::CompletingRebalance => {
                let mut replies = Vec::new();
                if let Some(old) = member.awaiting_sync.replace(reply) {
                    replies.push((old, sync_error(ErrorCode::RebalanceInProgress)));
                }
                if is_leader {
                    let mut assignments: BTreeMap<String, Vec<u8>> =
                        request.assignments.into_iter().collect();
                    for (id, member) in &mut group.members {
                        // Members the leader left out get nothing.
                        member.assignment = assignments.remove(id).unwrap_or_default();
                        if let Some(to) = member.awaiting_sync.take() {
                            let response = SyncGroupResponse {
                                error: ErrorCode::None,
                                assignment: member.assignment.clone(),
                            };
                            replies.push((to, Reply::Sync(response)));
                        }
                    }
                    group.state = GroupState::Stable;
                }
                replies
            }
        }
        // exercise-end
    }
    // ANCHOR_END: sync

    // ANCHOR: heartbeat
    /// A Heartbeat: keeps the member alive, and tells it when to rejoin.
    pub fn heartbeat(&mut self, now: u64, request: &HeartbeatRequest) -> ErrorCode {
        // exercise-hole: heartbeat | An unknown group or member is `UnknownMemberId`. Otherwise the member is alive (`last_seen = now`), even if its generation is old (then `IllegalGeneration`). In its generation the state decides: PreparingRebalance `RebalanceInProgress` (rejoin!), CompletingRebalance and Stable `None`, Empty and Dead `UnknownMemberId`.
        // exercise-hint: A heartbeat is how a Stable member learns that a rebalance started: the coordinator cannot call it, so it answers its next heartbeat with `RebalanceInProgress`. Note `last_seen` before checking the generation: a member between generations is still alive.
        // exercise-hint: `let Some(group) = self.groups.get_mut(&request.group_id) else { return ErrorCode::UnknownMemberId }`, the same for `group.members.get_mut(&request.member_id)`; then `member.last_seen = now`; `if request.generation_id != group.generation { return ErrorCode::IllegalGeneration }`; then `match group.state`.
        let Some(group) = self.groups.get_mut(&request.group_id) else {
            return ErrorCode::UnknownMemberId;
        };
        let Some(member) = group.members.get_mut(&request.member_id) else {
            return ErrorCode::UnknownMemberId;
        };
        member.last_seen = now;
        if request.generation_id != group.generation {
            return ErrorCode::IllegalGeneration;
        }
        match group.state {
            GroupState::PreparingRebalance => ErrorCode::RebalanceInProgress,
            GroupState::CompletingRebalance | GroupState::Stable => ErrorCode::None,
            GroupState::Empty | GroupState::Dead => ErrorCode::UnknownMemberId,
        }
        // exercise-end
    }
    // ANCHOR_END: heartbeat

    /// A LeaveGroup: the member goes now, and the group rebalances without
    /// waiting for its session to time out.
    pub fn leave(&mut self, now: u64, request: &LeaveGroupRequest) -> (ErrorCode, Replies) {
        let Some(group) = self.groups.get_mut(&request.group_id) else {
            return (ErrorCode::UnknownMemberId, Vec::new());
        };
        if group.pending.remove(&request.member_id).is_some() {
            return (ErrorCode::None, Vec::new());
        }
        if !group.members.contains_key(&request.member_id) {
            return (ErrorCode::UnknownMemberId, Vec::new());
        }
        let mut replies = Vec::new();
        group.remove_member(&request.member_id, ErrorCode::UnknownMemberId, &mut replies);
        replies.extend(group.member_removed(now));
        (ErrorCode::None, replies)
    }

    // ANCHOR: tick
    /// Time passes: members silent for their session timeout are removed,
    /// and rebalances whose deadline passed go ahead without the members
    /// that did not rejoin.
    pub fn tick(&mut self, now: u64) -> Replies {
        let mut replies = Vec::new();
        for group in self.groups.values_mut() {
            group.pending.retain(|_, expires| *expires > now);
            // A member held in a join is waiting on us, not silent.
            let expired: Vec<String> = group
                .members
                .iter()
                .filter(|(_, m)| m.awaiting_join.is_none())
                .filter(|(_, m)| now >= m.last_seen + m.session_timeout)
                .map(|(id, _)| id.clone())
                .collect();
            for id in &expired {
                group.remove_member(id, ErrorCode::UnknownMemberId, &mut replies);
            }
            if !expired.is_empty() {
                replies.extend(group.member_removed(now));
            }
            if group.state == GroupState::PreparingRebalance && now >= group.rebalance_deadline {
                replies.extend(group.try_complete_join(now, true));
            }
        }
        replies
    }
    // ANCHOR_END: tick

    // ANCHOR: check_commit
    /// Whether a commit from this member of this generation may be stored.
    /// Generation -1 with no member id is a consumer outside group
    /// management: allowed while the group has no members.
    pub fn check_commit(
        &mut self,
        now: u64,
        group_id: &str,
        generation: i32,
        member_id: &str,
    ) -> ErrorCode {
        // exercise-hole: check_commit | An empty group id is `InvalidGroupId`. Generation -1 with no member id (a consumer outside group management) may commit while the group has no members, else `UnknownMemberId`. Otherwise: unknown group `IllegalGeneration`, unknown member `UnknownMemberId`; note `last_seen`; a generation not the group's is `IllegalGeneration`; then Stable and PreparingRebalance `None`, CompletingRebalance `RebalanceInProgress`, Empty and Dead `UnknownMemberId`.
        // exercise-hint: The generation fences commits: a member that missed a rebalance must not commit over the new owner's progress. While the group prepares a rebalance the ending generation may still commit (members commit before they give partitions up); once the next generation exists but has no assignment yet, nobody may.
        // exercise-hint: `let group = self.groups.get_mut(group_id)`; `if generation < 0 && member_id.is_empty() { return match group { Some(g) if !g.members.is_empty() => UnknownMemberId, _ => None } }`; then `let Some(group) = group else { return IllegalGeneration }`, the member as in `heartbeat`, and a `match group.state`.
        if group_id.is_empty() {
            return ErrorCode::InvalidGroupId;
        }
        let group = self.groups.get_mut(group_id);
        if generation < 0 && member_id.is_empty() {
            return match group {
                Some(g) if !g.members.is_empty() => ErrorCode::UnknownMemberId,
                _ => ErrorCode::None,
            };
        }
        let Some(group) = group else {
            return ErrorCode::IllegalGeneration;
        };
        let Some(member) = group.members.get_mut(member_id) else {
            return ErrorCode::UnknownMemberId;
        };
        member.last_seen = now;
        if generation != group.generation {
            return ErrorCode::IllegalGeneration;
        }
        match group.state {
            // While the group prepares a rebalance, the ending generation
            // may still commit: that is when members commit what they
            // processed, before giving their partitions up.
            GroupState::Stable | GroupState::PreparingRebalance => ErrorCode::None,
            // The next generation exists, but has no assignment yet.
            GroupState::CompletingRebalance => ErrorCode::RebalanceInProgress,
            GroupState::Empty | GroupState::Dead => ErrorCode::UnknownMemberId,
        }
        // exercise-end
    }

    // ANCHOR_END: check_commit

    // ANCHOR: commit_decision
    /// An OffsetCommit: the member and generation must be allowed to
    /// commit ([`GroupCoordinator::check_commit`]), and then each partition
    /// must exist (`partition_count` says how many a topic has, `None` for
    /// none) and carry at most [`MAX_METADATA_BYTES`] of metadata. Refused
    /// partitions get their error; the rest are accepted, and a group that
    /// commits becomes known (as Empty, if nobody has joined it).
    pub fn commit(
        &mut self,
        now: u64,
        request: OffsetCommitRequest,
        partition_count: impl Fn(&str) -> Option<u32>,
    ) -> CommitDecision {
        // exercise-hole: commit | Ask `self.check_commit` once for the request's group, generation and member. Then, per topic and partition in the request's order, the error is the member's if it has one, else `UnknownTopicOrPartition` if the topic has no count or the partition is not below it, else `OffsetMetadataTooLarge` past `MAX_METADATA_BYTES`, else `None`, and the position is accepted. If anything was accepted, `self.ensure_group`.
        // exercise-hint: Each partition is judged alone: one bad partition does not refuse the others. The decision never touches the log: `accepted` lists what the shell must append, as `(topic, partition, offset, metadata)`, and the response has an error for every partition asked about.
        // exercise-hint: `let count = partition_count(&topic)`; `count.is_none_or(|n| p.partition >= n)` spots a missing partition; build `topics: Vec<(String, Vec<(u32, ErrorCode)>)>` and `accepted: Vec<Commit>`, and return `CommitDecision { response: OffsetCommitResponse { topics }, accepted }`.
        let member_error = self.check_commit(
            now,
            &request.group_id,
            request.generation_id,
            &request.member_id,
        );
        let mut topics = Vec::new();
        let mut accepted: Vec<Commit> = Vec::new();
        for (topic, partitions) in request.topics {
            let count = partition_count(&topic);
            let mut codes = Vec::new();
            for p in partitions {
                let error = if member_error != ErrorCode::None {
                    member_error
                } else if count.is_none_or(|n| p.partition >= n) {
                    ErrorCode::UnknownTopicOrPartition
                } else if p.metadata.len() > MAX_METADATA_BYTES {
                    ErrorCode::OffsetMetadataTooLarge
                } else {
                    accepted.push((topic.clone(), p.partition, p.offset, p.metadata));
                    ErrorCode::None
                };
                codes.push((p.partition, error));
            }
            topics.push((topic, codes));
        }
        if !accepted.is_empty() {
            self.ensure_group(&request.group_id);
        }
        CommitDecision {
            response: OffsetCommitResponse { topics },
            accepted,
        }
        // exercise-end
    }
    // ANCHOR_END: commit_decision

    /// Forgets every group `moved` names: this broker no longer
    /// coordinates them (chapter 6: another broker leads their offsets
    /// partition now). Their held joins and syncs are answered with
    /// `NOT_COORDINATOR`, so the members find the new coordinator and
    /// join again there.
    pub fn unload(&mut self, moved: impl Fn(&str) -> bool) -> Replies {
        let mut replies = Vec::new();
        let gone: Vec<String> = self.groups.keys().filter(|id| moved(id)).cloned().collect();
        for id in gone {
            let Some(mut group) = self.groups.remove(&id) else {
                continue;
            };
            let members: Vec<String> = group.members.keys().cloned().collect();
            for member in members {
                group.remove_member(&member, ErrorCode::NotCoordinator, &mut replies);
            }
        }
        replies
    }

    /// Makes sure a group with committed offsets is known (as Empty), as
    /// after a restart.
    pub fn ensure_group(&mut self, group_id: &str) {
        self.groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(crate::protocol::CONSUMER_PROTOCOL));
    }

    /// A group's state, if the group is known.
    pub fn state(&self, group_id: &str) -> Option<GroupState> {
        self.groups.get(group_id).map(|g| g.state)
    }

    /// Every group: `(id, protocol type, state)`.
    pub fn list(&self) -> Vec<(String, String, String)> {
        self.groups
            .iter()
            .map(|(id, g)| (id.clone(), g.protocol_type.clone(), g.state.to_string()))
            .collect()
    }

    /// Describes groups (unknown ones as Dead, `GroupIdNotFound`).
    pub fn describe(&self, group_ids: &[String]) -> DescribeGroupsResponse {
        let groups = group_ids
            .iter()
            .map(|id| match self.groups.get(id) {
                None => GroupDescription {
                    error: ErrorCode::GroupIdNotFound,
                    group_id: id.clone(),
                    state: GroupState::Dead.to_string(),
                    protocol_type: String::new(),
                    protocol: String::new(),
                    generation_id: -1,
                    members: Vec::new(),
                },
                Some(g) => {
                    let protocol = g.protocol.clone().unwrap_or_default();
                    GroupDescription {
                        error: ErrorCode::None,
                        group_id: id.clone(),
                        state: g.state.to_string(),
                        protocol_type: g.protocol_type.clone(),
                        generation_id: g.generation,
                        members: g
                            .members
                            .iter()
                            .map(|(member_id, m)| MemberDescription {
                                member_id: member_id.clone(),
                                client_id: m.client_id.clone(),
                                metadata: m.metadata(&protocol),
                                assignment: m.assignment.clone(),
                            })
                            .collect(),
                        protocol,
                    }
                }
            })
            .collect();
        DescribeGroupsResponse { groups }
    }
}
