//! Raft, as a sans-IO state machine.
//!
//! One [`Raft`] is one server of a Raft group. It does no I/O: it takes
//! inputs (a tick of the clock, a message from a peer, a command to
//! replicate) and collects what must happen in a [`Ready`], which the shell
//! carries out in a fixed order:
//!
//! 1. write `hard_state` and the log changes to disk, and sync them, all
//!    with one `fsync` (this is how several writes share one sync);
//!    a leader's `AppendEntries` may leave meanwhile
//!    ([`Message::may_precede_sync`]);
//! 2. only then send the other `messages`: a vote or an "appended" that a
//!    crash could take back would break the protocol's safety;
//! 3. apply `committed` entries to the state machine, in order;
//! 4. tell the core what is now on disk ([`Raft::persisted`]).
//!
//! The rules are those of the Raft paper's figure 2 (Ongaro and Ousterhout,
//! *In Search of an Understandable Consensus Algorithm*, 2014), by their
//! names: terms, `RequestVote`, `AppendEntries`, `commitIndex`,
//! `nextIndex` and `matchIndex`.

use std::collections::BTreeMap;

use ch06_replication::sim::{Millis, NodeId};
use serde::{Deserialize, Serialize};

/// A term: Raft's logical clock. Each election starts a new one, and a term
/// has at most one leader.
pub type Term = u64;

/// A position in the log, from 1; 0 means "before the first entry".
pub type Index = u64;

/// One entry of the replicated log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry<C> {
    /// The term of the leader that created it.
    pub term: Term,
    /// Its position in the log.
    pub index: Index,
    /// The command for the state machine; `None` for the entry a new leader
    /// appends to commit its predecessors' entries (the paper's section 8).
    pub command: Option<C>,
}

// ANCHOR: hard_state
/// What a server must keep on disk besides its log: the paper's
/// `currentTerm` and `votedFor`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardState {
    /// The latest term this server has seen.
    pub term: Term,
    /// Whom it voted for in `term`, if anyone.
    pub voted_for: Option<NodeId>,
}
// ANCHOR_END: hard_state

/// A snapshot of the state machine: everything the log held up to
/// `last_index`, which the log then no longer needs (log compaction).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The index of the last entry it includes.
    pub last_index: Index,
    /// That entry's term, for log matching at the snapshot's edge.
    pub last_term: Term,
    /// The state machine, as the shell encoded it.
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// The messages of the protocol. Every one carries the sender's term.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message<C> {
    /// A candidate asks for a vote.
    RequestVote {
        /// The candidate's term.
        term: Term,
        /// The index of the candidate's last entry.
        last_index: Index,
        /// The term of the candidate's last entry.
        last_term: Term,
    },
    /// The answer to `RequestVote`.
    Vote {
        /// The voter's term.
        term: Term,
        /// Whether the vote was granted.
        granted: bool,
    },
    /// A leader's entries (none for a heartbeat), after `prev_index`.
    AppendEntries {
        /// The leader's term.
        term: Term,
        /// The index of the entry just before `entries`.
        prev_index: Index,
        /// That entry's term, which the follower must have at `prev_index`.
        prev_term: Term,
        /// The entries to store.
        entries: Vec<Entry<C>>,
        /// The leader's commit index.
        commit: Index,
    },
    /// A leader's snapshot, for a follower that needs entries the leader
    /// has compacted away. (The paper sends it in chunks; one message
    /// here.)
    InstallSnapshot {
        /// The leader's term.
        term: Term,
        /// The snapshot.
        snapshot: Snapshot,
    },
    /// The answer to `AppendEntries` and `InstallSnapshot`.
    AppendResult {
        /// The follower's term.
        term: Term,
        /// Whether the follower's log now matches the leader's up to
        /// `match_index`.
        success: bool,
        /// On success, the index of the last entry the follower now
        /// matches; on failure, the last index it might match, where the
        /// leader should try next.
        match_index: Index,
    },
}

impl<C> Message<C> {
    // ANCHOR: may_precede_sync
    /// Whether the message may leave before the sender's writes so far are
    /// synced. A leader's `AppendEntries` may: it claims nothing about the
    /// leader's disk (the leader counts its own copy towards a majority
    /// only once `persisted`, and the commit index it carries rests on
    /// that), so the leader can write its entries and send them to its
    /// followers at the same time, as the Raft dissertation allows
    /// (section 10.2.1). Every other message vouches for the sender's disk
    /// (a vote, an acknowledgement of entries) and must wait for the sync.
    pub fn may_precede_sync(&self) -> bool {
        matches!(self, Message::AppendEntries { .. })
    }
    // ANCHOR_END: may_precede_sync

    /// The sender's term.
    pub fn term(&self) -> Term {
        match self {
            Message::RequestVote { term, .. }
            | Message::Vote { term, .. }
            | Message::AppendEntries { term, .. }
            | Message::InstallSnapshot { term, .. }
            | Message::AppendResult { term, .. } => *term,
        }
    }
}

/// A server's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Follows a leader, or waits for one.
    Follower,
    /// Asks for votes.
    Candidate,
    /// Leads its term.
    Leader,
}

/// The timing of a Raft group.
#[derive(Debug, Clone)]
pub struct RaftConfig {
    /// A follower that hears from no leader for a random time between this
    /// and twice this starts an election.
    pub election_timeout_ms: Millis,
    /// How often a leader sends heartbeats (empty `AppendEntries`).
    pub heartbeat_interval_ms: Millis,
    /// At most this many entries in one `AppendEntries`.
    pub max_entries_per_message: usize,
}

impl RaftConfig {
    /// How long a leader waits for a follower's answer before it takes
    /// its message as lost and sends it again: half the election timeout
    /// (and at least a heartbeat), so that a follower whose message was
    /// lost hears from the leader again before it would start an
    /// election. (etcd's leader likewise sends a busy follower nothing
    /// more until its inflight window drains, and only heartbeats it.)
    pub fn resend_after_ms(&self) -> Millis {
        (self.election_timeout_ms / 2).max(self.heartbeat_interval_ms)
    }
}

impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig {
            election_timeout_ms: 1_000,
            heartbeat_interval_ms: 100,
            max_entries_per_message: 64,
        }
    }
}

// ANCHOR: ready
/// What the shell must do, in this order: persist, send, apply. See the
/// module's docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready<C> {
    /// The term and vote to write, if they changed.
    pub hard_state: Option<HardState>,
    /// A snapshot from the leader, to store and to load into the state
    /// machine in place of what it held, before `committed` is applied.
    /// Stored entries up to its `last_index` are no longer needed.
    pub snapshot: Option<Snapshot>,
    /// Drop every stored entry from this index on (a follower's log that
    /// disagreed with its leader's), before appending.
    pub truncate_from: Option<Index>,
    /// Entries to append to the stored log.
    pub append: Vec<Entry<C>>,
    /// Messages to send: those that [`Message::may_precede_sync`] at once,
    /// the others once the above is synced.
    pub messages: Vec<(NodeId, Message<C>)>,
    /// Entries now committed, to apply in order.
    pub committed: Vec<Entry<C>>,
}
// ANCHOR_END: ready

/// What [`Raft::compact`] made.
#[derive(Debug)]
pub struct Compacted<C> {
    /// The snapshot, for the shell to store.
    pub snapshot: Snapshot,
    /// The entries the log let go of. Freeing a hundred thousand of them
    /// takes tens of milliseconds: a shell that must not pause for that
    /// drops them on another thread.
    pub released: Vec<Entry<C>>,
}

impl<C> Ready<C> {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.hard_state.is_none()
            && self.snapshot.is_none()
            && self.truncate_from.is_none()
            && self.append.is_empty()
            && self.messages.is_empty()
            && self.committed.is_empty()
    }
}

/// One write to a server's disk. A shell makes them in order, and a crash
/// may keep any prefix of those not yet synced (Raft allows that: nothing
/// that depends on them has been sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskWrite<C> {
    /// The term and vote.
    Hard(HardState),
    /// A snapshot; stored entries up to its last index may go.
    Snapshot(Snapshot),
    /// Drop stored entries from this index on.
    Truncate(Index),
    /// Append an entry.
    Append(Entry<C>),
}

impl<C: Clone> Ready<C> {
    /// The writes this asks for, in the order to make them: the hard
    /// state, the snapshot, the truncation, then the new entries.
    pub fn writes(&self) -> Vec<DiskWrite<C>> {
        let mut writes = Vec::new();
        if let Some(hard) = self.hard_state {
            writes.push(DiskWrite::Hard(hard));
        }
        if let Some(snapshot) = &self.snapshot {
            writes.push(DiskWrite::Snapshot(snapshot.clone()));
        }
        if let Some(from) = self.truncate_from {
            writes.push(DiskWrite::Truncate(from));
        }
        writes.extend(self.append.iter().cloned().map(DiskWrite::Append));
        writes
    }
}

/// Why a command was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// Only the leader takes commands; `leader` is the one this server
    /// knows of.
    #[error("not the leader (the leader is {leader:?})")]
    NotLeader {
        /// The leader this server follows in its term, if it knows one.
        leader: Option<NodeId>,
    },
}

/// What the leader knows of one follower.
#[derive(Debug, Clone, Copy)]
struct Progress {
    /// The next entry to send it.
    next: Index,
    /// The last entry known to be on its disk.
    matched: Index,
    /// Whether a message sent to it is not answered yet. Until it is, new
    /// entries wait, and the next `AppendEntries` carries all of them:
    /// under load, one message (and one follower `fsync`) per round trip
    /// for every write proposed meanwhile, not one per write.
    waiting: bool,
    /// The `match_index` the answer to the last message sent will carry:
    /// its last entry. An answer below it is to an older message (a
    /// message sent again), and does not end the wait.
    awaited: Index,
    /// When the last message was sent: one unanswered for
    /// [`RaftConfig::resend_after_ms`] is taken as lost and sent again.
    sent_at: Millis,
}

/// One server of a Raft group.
#[derive(Debug)]
pub struct Raft<C> {
    id: NodeId,
    peers: Vec<NodeId>,
    config: RaftConfig,
    rng: fastrand::Rng,
    hard: HardState,
    role: Role,
    leader: Option<NodeId>,
    /// The log after `base`, in memory (a real server keeps a window of it
    /// and reads the rest from disk).
    log: Vec<Entry<C>>,
    /// The index of the entry just before `log`, and its term. The entries
    /// up to it are gone: the log starts after the previous snapshot (see
    /// [`Raft::compact`]).
    base: Index,
    base_term: Term,
    /// The latest snapshot, at or after `base`.
    snapshot: Option<Snapshot>,
    /// The last index the shell has synced.
    persisted: Index,
    commit: Index,
    applied: Index,
    votes: Vec<NodeId>,
    progress: BTreeMap<NodeId, Progress>,
    /// When this server starts an election if it hears nothing first.
    election_deadline: Millis,
    /// When a leader next sends heartbeats.
    heartbeat_due: Millis,
    now: Millis,
    ready: Ready<C>,
}

impl<C: Clone> Raft<C> {
    /// Starts server `id` of a group of `members` (itself included) from
    /// what it had on disk: its hard state, its latest snapshot and the log
    /// (which may begin before the snapshot). `seed` drives its random
    /// election timeouts.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: NodeId,
        members: &[NodeId],
        config: RaftConfig,
        hard: HardState,
        snapshot: Option<Snapshot>,
        mut log: Vec<Entry<C>>,
        now: Millis,
        seed: u64,
    ) -> Self {
        let covered = snapshot.as_ref().map_or(0, |s| s.last_index);
        let (mut base, mut base_term) = snapshot
            .as_ref()
            .map_or((0, 0), |s| (s.last_index, s.last_term));
        match (log.first(), log.last()) {
            // Entries kept behind the snapshot (see `compact`): the first
            // stands for the base, whose term log matching needs.
            (Some(first), Some(last)) if first.index <= covered && last.index >= covered => {
                (base, base_term) = (first.index, first.term);
                log.remove(0);
            }
            // The log picks up where the snapshot ends, or the snapshot
            // replaced it all.
            _ => log.retain(|e| e.index > covered),
        }
        let persisted = log.last().map_or(base, |e| e.index);
        let mut raft = Raft {
            id,
            peers: members.iter().copied().filter(|&m| m != id).collect(),
            config,
            rng: fastrand::Rng::with_seed(seed),
            hard,
            role: Role::Follower,
            leader: None,
            log,
            base,
            base_term,
            snapshot,
            persisted,
            // What the snapshot holds is committed and, once the shell has
            // loaded it, applied.
            commit: covered,
            applied: covered,
            votes: Vec::new(),
            progress: BTreeMap::new(),
            election_deadline: 0,
            heartbeat_due: 0,
            now,
            ready: Ready {
                hard_state: None,
                snapshot: None,
                truncate_from: None,
                append: Vec::new(),
                messages: Vec::new(),
                committed: Vec::new(),
            },
        };
        raft.reset_election_deadline();
        raft
    }

    /// This server's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Its role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Its current term.
    pub fn term(&self) -> Term {
        self.hard.term
    }

    /// The leader of its term, if it knows one.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// The index of the last committed entry it knows of.
    pub fn commit_index(&self) -> Index {
        self.commit
    }

    /// The index of its last entry.
    pub fn last_index(&self) -> Index {
        self.log.last().map_or(self.base, |e| e.index)
    }

    /// Where entry `index` (after the base) sits in `log`.
    fn position(&self, index: Index) -> usize {
        (index - self.base - 1) as usize
    }

    /// The term of the entry at `index` (0 for index 0), if it has it. An
    /// entry before the log has no term any more, except the base.
    fn term_at(&self, index: Index) -> Option<Term> {
        if index > self.base {
            self.log.get(self.position(index)).map(|e| e.term)
        } else if index == self.base {
            Some(self.base_term)
        } else {
            None
        }
    }

    fn last_term(&self) -> Term {
        self.term_at(self.last_index())
            .expect("the last index is the snapshot's or in the log")
    }

    // ANCHOR: compact
    /// Compacts the log: the shell's state machine, encoded as `data`,
    /// holds everything up to `index` (which it has applied), and becomes
    /// the snapshot. The entries up to the *previous* snapshot go: those
    /// since stay, so that a follower a little behind still catches up
    /// from the log, not from the whole snapshot. Returns the snapshot for
    /// the shell to store, and the entries let go of; `None` if `index` is
    /// not applied or is not past the latest snapshot.
    pub fn compact(&mut self, index: Index, data: Vec<u8>) -> Option<Compacted<C>> {
        let previous = self
            .snapshot
            .as_ref()
            .map_or((0, 0), |s| (s.last_index, s.last_term));
        if index <= previous.0 || index > self.applied {
            return None;
        }
        let last_term = self.term_at(index).expect("an applied entry is in the log");
        let mut released = Vec::new();
        if previous.0 > self.base {
            released = self.log.drain(..self.position(previous.0) + 1).collect();
            (self.base, self.base_term) = previous;
        }
        let snapshot = Snapshot {
            last_index: index,
            last_term,
            data,
        };
        self.snapshot = Some(snapshot.clone());
        Some(Compacted { snapshot, released })
    }
    // ANCHOR_END: compact

    /// Takes what the shell must now do (see [`Ready`]).
    pub fn take_ready(&mut self) -> Ready<C> {
        if self.commit > self.applied {
            let from = self.position(self.applied + 1);
            let to = self.position(self.commit) + 1;
            self.ready.committed.extend_from_slice(&self.log[from..to]);
            self.applied = self.commit;
        }
        std::mem::replace(
            &mut self.ready,
            Ready {
                hard_state: None,
                snapshot: None,
                truncate_from: None,
                append: Vec::new(),
                messages: Vec::new(),
                committed: Vec::new(),
            },
        )
    }

    // ANCHOR: persisted
    /// The shell has synced the log up to `index`: a leader may now count
    /// its own copy towards a majority.
    pub fn persisted(&mut self, index: Index) {
        self.persisted = self.persisted.max(index.min(self.last_index()));
        if self.role == Role::Leader {
            self.advance_commit();
        }
    }
    // ANCHOR_END: persisted

    /// Appends `command` to the log if this server leads; returns its index.
    /// The command is committed once a majority has it, which a later
    /// [`Ready::committed`] shows.
    pub fn propose(&mut self, command: C) -> Result<Index, ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader: self.leader,
            });
        }
        let index = self.append_own(Some(command));
        // Batching: a follower that has a message unanswered gets this
        // entry with the next one, when the answer comes (or with the next
        // heartbeat, if a message was lost).
        for peer in self.peers.clone() {
            if self.progress.get(&peer).is_some_and(|p| !p.waiting) {
                self.send_append(peer);
            }
        }
        // A group of one commits on its own sync.
        self.advance_commit();
        Ok(index)
    }

    /// Time passed: start an election, or send heartbeats, when due.
    pub fn tick(&mut self, now: Millis) {
        self.now = now;
        match self.role {
            Role::Leader => {
                if now >= self.heartbeat_due {
                    self.broadcast_append();
                }
            }
            Role::Follower | Role::Candidate => {
                if now >= self.election_deadline {
                    self.start_election();
                }
            }
        }
    }

    // ANCHOR: step
    /// Handles `msg` from peer `from`.
    pub fn step(&mut self, from: NodeId, msg: Message<C>) {
        // Any message from a later term makes this server a follower of
        // that term; a message from an earlier one is stale.
        if msg.term() > self.hard.term {
            self.become_follower(msg.term(), None);
        }
        match msg {
            Message::RequestVote {
                term,
                last_index,
                last_term,
            } => self.on_request_vote(from, term, last_index, last_term),
            Message::Vote { term, granted } => self.on_vote(from, term, granted),
            Message::AppendEntries {
                term,
                prev_index,
                prev_term,
                entries,
                commit,
            } => self.on_append_entries(from, term, prev_index, prev_term, entries, commit),
            Message::InstallSnapshot { term, snapshot } => {
                self.on_install_snapshot(from, term, snapshot)
            }
            Message::AppendResult {
                term,
                success,
                match_index,
            } => self.on_append_result(from, term, success, match_index),
        }
    }
    // ANCHOR_END: step

    fn send(&mut self, to: NodeId, msg: Message<C>) {
        self.ready.messages.push((to, msg));
    }

    fn set_hard_state(&mut self, hard: HardState) {
        if hard != self.hard {
            self.hard = hard;
            self.ready.hard_state = Some(hard);
        }
    }

    // ANCHOR: election_timeout
    fn reset_election_deadline(&mut self) {
        let base = self.config.election_timeout_ms;
        self.election_deadline = self.now + base + self.rng.u64(0..base.max(1));
    }
    // ANCHOR_END: election_timeout

    /// How many servers make a majority of the group (itself included).
    fn majority(&self) -> usize {
        let members = self.peers.len() + 1;
        members / 2 + 1
    }

    fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        if term > self.hard.term {
            self.set_hard_state(HardState {
                term,
                voted_for: None,
            });
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.votes.clear();
        self.progress.clear();
    }

    // ANCHOR: start_election
    fn start_election(&mut self) {
        self.role = Role::Candidate;
        self.leader = None;
        self.set_hard_state(HardState {
            term: self.hard.term + 1,
            voted_for: Some(self.id),
        });
        self.votes = vec![self.id];
        self.reset_election_deadline();
        let (term, last_index, last_term) = (self.hard.term, self.last_index(), self.last_term());
        for peer in self.peers.clone() {
            self.send(
                peer,
                Message::RequestVote {
                    term,
                    last_index,
                    last_term,
                },
            );
        }
        // A group of one elects itself.
        if self.votes.len() >= self.majority() {
            self.become_leader();
        }
    }
    // ANCHOR_END: start_election

    // ANCHOR: request_vote
    fn on_request_vote(&mut self, from: NodeId, term: Term, last_index: Index, last_term: Term) {
        // exercise-hole: request_vote | Grant the vote only if the request is of our current term, we have not voted for someone else in it, and the candidate's log is at least as up to date as ours (the election restriction: compare (last_term, last_index) pairs). A granted vote is written (`set_hard_state` with `voted_for`) and resets our election deadline. Always answer with a `Vote` carrying our term.
        // exercise-hint: `step` has already moved us to a later term if the request had one, so `term == self.hard.term` is the check for a stale request. Tuples compare element by element: `(last_term, last_index) >= (self.last_term(), self.last_index())`.
        // exercise-hint: `let free = self.hard.voted_for.is_none_or(|v| v == from);` then, if granted, `self.set_hard_state(HardState { term, voted_for: Some(from) }); self.reset_election_deadline();` and `self.send(from, Message::Vote { term: self.hard.term, granted })`.
        // The election restriction (section 5.4.1): a vote only for a log at
        // least as up to date as ours, so a leader holds every committed
        // entry.
        let up_to_date = (last_term, last_index) >= (self.last_term(), self.last_index());
        let free = self.hard.voted_for.is_none_or(|v| v == from);
        let granted = term == self.hard.term && free && up_to_date;
        if granted {
            self.set_hard_state(HardState {
                term,
                voted_for: Some(from),
            });
            self.reset_election_deadline();
        }
        let term = self.hard.term;
        self.send(from, Message::Vote { term, granted });
        // exercise-end
    }
    // ANCHOR_END: request_vote

    fn on_vote(&mut self, from: NodeId, term: Term, granted: bool) {
        if self.role != Role::Candidate || term != self.hard.term || !granted {
            return;
        }
        if !self.votes.contains(&from) {
            self.votes.push(from);
        }
        if self.votes.len() >= self.majority() {
            self.become_leader();
        }
    }

    // ANCHOR: become_leader
    fn become_leader(&mut self) {
        self.role = Role::Leader;
        self.leader = Some(self.id);
        self.votes.clear();
        let next = self.last_index() + 1;
        self.progress = self
            .peers
            .iter()
            .map(|&p| {
                let progress = Progress {
                    next,
                    matched: 0,
                    waiting: false,
                    awaited: 0,
                    sent_at: self.now,
                };
                (p, progress)
            })
            .collect();
        // A leader commits entries of earlier terms only by committing one
        // of its own (section 5.4.2): this empty entry is that one.
        self.append_own(None);
        self.broadcast_append();
    }
    // ANCHOR_END: become_leader

    fn append_own(&mut self, command: Option<C>) -> Index {
        let entry = Entry {
            term: self.hard.term,
            index: self.last_index() + 1,
            command,
        };
        self.log.push(entry.clone());
        self.ready.append.push(entry);
        self.last_index()
    }

    /// The heartbeat: an `AppendEntries` to every follower, except one
    /// still busy with the last message sent to it, which already resets
    /// its election timer. Sending that one the same entries again every
    /// heartbeat, when it is slow to answer, would make it slower: it
    /// must decode every copy, and each answer would send another.
    fn broadcast_append(&mut self) {
        self.heartbeat_due = self.now + self.config.heartbeat_interval_ms;
        let resend_after = self.config.resend_after_ms();
        for peer in self.peers.clone() {
            let busy = self
                .progress
                .get(&peer)
                .is_some_and(|p| p.waiting && self.now.saturating_sub(p.sent_at) < resend_after);
            if !busy {
                self.send_append(peer);
            }
        }
        self.advance_commit();
    }

    // ANCHOR: send_append
    fn send_append(&mut self, peer: NodeId) {
        let Some(progress) = self.progress.get_mut(&peer) else {
            return;
        };
        progress.waiting = true;
        progress.sent_at = self.now;
        let prev_index = progress.next - 1;
        let Some(prev_term) = self.term_at(prev_index) else {
            // The follower needs entries this leader compacted away.
            let snapshot = self
                .snapshot
                .clone()
                .expect("only a snapshot removes entries");
            self.await_answer(peer, snapshot.last_index);
            let term = self.hard.term;
            self.send(peer, Message::InstallSnapshot { term, snapshot });
            return;
        };
        let from = (prev_index - self.base) as usize;
        let to = (from + self.config.max_entries_per_message).min(self.log.len());
        let entries = self.log[from..to].to_vec();
        self.await_answer(peer, prev_index + entries.len() as Index);
        let msg = Message::AppendEntries {
            term: self.hard.term,
            prev_index,
            prev_term,
            entries,
            commit: self.commit,
        };
        self.send(peer, msg);
    }
    // ANCHOR_END: send_append

    /// Records the `match_index` the answer to the message being sent to
    /// `peer` will carry.
    fn await_answer(&mut self, peer: NodeId, last: Index) {
        if let Some(progress) = self.progress.get_mut(&peer) {
            progress.awaited = last;
        }
    }

    // ANCHOR: append_entries
    fn on_append_entries(
        &mut self,
        from: NodeId,
        term: Term,
        prev_index: Index,
        prev_term: Term,
        entries: Vec<Entry<C>>,
        commit: Index,
    ) {
        if term < self.hard.term {
            let term = self.hard.term;
            self.send(
                from,
                Message::AppendResult {
                    term,
                    success: false,
                    match_index: 0,
                },
            );
            return;
        }
        // The leader of our term: a candidate of the same term steps down.
        self.become_follower(term, Some(from));
        self.reset_election_deadline();
        // Entries up to our log's base are committed (a snapshot holds
        // them), so they match the leader's: skip to the base.
        let (prev_index, prev_term, entries) = if prev_index < self.base {
            let base = self.base;
            let rest: Vec<_> = entries.into_iter().filter(|e| e.index > base).collect();
            (base, self.base_term, rest)
        } else {
            (prev_index, prev_term, entries)
        };
        // exercise-hole: log_matching | Log matching: if our log has no entry at `prev_index` with `prev_term`, answer failure with the last index we might match (`prev_index - 1`, at most our last index). Otherwise store the entries: skip those we already have with the same term, and at the first whose term differs drop it and everything after (`self.truncate_from`), then append the rest (to `self.log` and `self.ready.append`). Move the commit index up to the leader's, but not past the last new entry, and never back. Answer success with `match_index` the last new entry's index.
        // exercise-hint: Never truncate when the entries agree: an old, delayed `AppendEntries` may carry fewer entries than we have, and cutting would lose entries the leader already counted.
        // exercise-hint: `for entry in entries { match self.term_at(entry.index) { Some(t) if t == entry.term => continue, Some(_) => self.truncate_from(entry.index), None => {} } self.log.push(entry.clone()); self.ready.append.push(entry); }` and `let last_new = prev_index + n;` where `n` is the number of entries.
        if self.term_at(prev_index) != Some(prev_term) {
            // Log matching fails at prev_index: ask for earlier entries.
            let match_index = prev_index.saturating_sub(1).min(self.last_index());
            self.send(
                from,
                Message::AppendResult {
                    term,
                    success: false,
                    match_index,
                },
            );
            return;
        }
        let last_new = prev_index + entries.len() as Index;
        for entry in entries {
            match self.term_at(entry.index) {
                Some(t) if t == entry.term => continue,
                Some(_) => {
                    // A conflict: this entry and all after it were never
                    // committed (a leader has every committed entry), so
                    // they go.
                    self.truncate_from(entry.index);
                }
                None => {}
            }
            self.log.push(entry.clone());
            self.ready.append.push(entry);
        }
        // The leader's commit index, but no further than the entries this
        // message shows we share with it, and never back: a message sent
        // again from where the leader last knew us to be may reach less
        // far than an earlier one.
        self.commit = self.commit.max(commit.min(last_new));
        self.send(
            from,
            Message::AppendResult {
                term,
                success: true,
                match_index: last_new,
            },
        );
        // exercise-end
    }
    // ANCHOR_END: append_entries

    // ANCHOR: install_snapshot
    fn on_install_snapshot(&mut self, from: NodeId, term: Term, snapshot: Snapshot) {
        if term < self.hard.term {
            let term = self.hard.term;
            let answer = Message::AppendResult {
                term,
                success: false,
                match_index: 0,
            };
            self.send(from, answer);
            return;
        }
        self.become_follower(term, Some(from));
        self.reset_election_deadline();
        let last_index = snapshot.last_index;
        if last_index > self.commit {
            if self.term_at(last_index) != Some(snapshot.last_term) {
                // Our log is behind or disagrees: the snapshot replaces
                // all of it, down to the first entry stored. (If it agrees,
                // it all stays: the entries up to the snapshot are the
                // ones it holds.)
                self.log.clear();
                (self.base, self.base_term) = (last_index, snapshot.last_term);
                self.ready.append.clear();
                self.ready.truncate_from = Some(1);
            }
            self.persisted = self.persisted.max(last_index);
            self.commit = last_index;
            self.applied = last_index;
            // Anything committed but not yet handed out is in the snapshot.
            self.ready.committed.clear();
            self.snapshot = Some(snapshot.clone());
            self.ready.snapshot = Some(snapshot);
        }
        let answer = Message::AppendResult {
            term,
            success: true,
            match_index: last_index,
        };
        self.send(from, answer);
    }
    // ANCHOR_END: install_snapshot

    fn truncate_from(&mut self, index: Index) {
        let keep = self.position(index);
        self.log.truncate(keep);
        self.persisted = self.persisted.min(index - 1);
        self.ready.append.retain(|e| e.index < index);
        self.ready.truncate_from = Some(
            self.ready
                .truncate_from
                .map_or(index, |earlier| earlier.min(index)),
        );
    }

    fn on_append_result(&mut self, from: NodeId, term: Term, success: bool, match_index: Index) {
        if self.role != Role::Leader || term != self.hard.term {
            return;
        }
        let last = self.last_index();
        let Some(progress) = self.progress.get_mut(&from) else {
            return;
        };
        if success {
            progress.matched = progress.matched.max(match_index.min(last));
            progress.next = progress.next.max(progress.matched + 1);
            // An answer to a message sent before the last one (sent again
            // after a silence) is not the end of the wait: the last one's
            // answer is still to come, and sending more now would put a
            // second copy of its entries on the way.
            let current = match_index >= progress.awaited;
            if current {
                progress.waiting = false;
            }
            self.advance_commit();
            if current && self.progress[&from].next <= last {
                self.send_append(from);
            }
        } else {
            progress.waiting = false;
            // Back up to where the follower says it might match, at least
            // one entry, and try again.
            // A late refusal never takes it back below what it matches.
            progress.next = (match_index + 1)
                .clamp(1, progress.next.saturating_sub(1).max(1))
                .max(progress.matched + 1);
            self.send_append(from);
        }
    }

    // ANCHOR: advance_commit
    /// Moves the commit index to the highest entry of this term that a
    /// majority (this leader's synced log included) holds.
    fn advance_commit(&mut self) {
        // exercise-hole: advance_commit | Find the highest index that a majority holds: each follower's `matched` and this leader's own `persisted` (not its whole log: only what is synced counts). Commit it only if it is above `self.commit` and the entry there is of the current term (Raft's figure 8: entries of earlier terms are committed only by committing one of this term).
        // exercise-hint: Sort the matched indexes from high to low; the one at position `majority() - 1` is held by a majority.
        // exercise-hint: `let mut matched: Vec<Index> = self.progress.values().map(|p| p.matched).collect(); matched.push(self.persisted); matched.sort_unstable_by(|a, b| b.cmp(a)); let candidate = matched[self.majority() - 1];` then check `self.term_at(candidate) == Some(self.hard.term)`.
        let mut matched: Vec<Index> = self.progress.values().map(|p| p.matched).collect();
        matched.push(self.persisted);
        matched.sort_unstable_by(|a, b| b.cmp(a));
        let candidate = matched[self.majority() - 1];
        if candidate > self.commit && self.term_at(candidate) == Some(self.hard.term) {
            self.commit = candidate;
        }
        // exercise-end
    }
    // ANCHOR_END: advance_commit
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RaftConfig {
        RaftConfig {
            election_timeout_ms: 100,
            heartbeat_interval_ms: 10,
            max_entries_per_message: 16,
        }
    }

    fn server(id: NodeId, hard: HardState, log: Vec<Entry<u32>>) -> Raft<u32> {
        Raft::new(id, &[1, 2, 3], config(), hard, None, log, 0, u64::from(id))
    }

    fn entry(term: Term, index: Index, command: u32) -> Entry<u32> {
        Entry {
            term,
            index,
            command: Some(command),
        }
    }

    /// A tiny shell: persists at once, and delivers every message in order
    /// until none is left.
    fn settle(servers: &mut [Raft<u32>]) -> Vec<(NodeId, Entry<u32>)> {
        let mut applied = Vec::new();
        loop {
            let mut messages = Vec::new();
            for s in servers.iter_mut() {
                let last = s.last_index();
                s.persisted(last);
                let ready = s.take_ready();
                messages.extend(ready.messages.into_iter().map(|(to, m)| (s.id(), to, m)));
                applied.extend(ready.committed.into_iter().map(|e| (s.id(), e)));
            }
            if messages.is_empty() {
                return applied;
            }
            for (from, to, msg) in messages {
                if let Some(s) = servers.iter_mut().find(|s| s.id() == to) {
                    s.step(from, msg);
                }
            }
        }
    }

    #[test]
    fn a_timed_out_follower_is_elected_and_commits_its_first_entry() {
        let mut servers: Vec<_> = (1..=3)
            .map(|id| server(id, HardState::default(), Vec::new()))
            .collect();
        servers[0].tick(1_000);
        assert_eq!(servers[0].role(), Role::Candidate);
        assert_eq!(servers[0].term(), 1);
        settle(&mut servers);
        assert_eq!(servers[0].role(), Role::Leader);
        assert_eq!(servers[1].leader(), Some(1));
        servers[0].propose(7).unwrap();
        let mut applied = settle(&mut servers);
        assert_eq!(servers[0].commit_index(), 2);
        // Followers learn the commit index from the leader's next message.
        servers[0].tick(1_020);
        applied.extend(settle(&mut servers));
        // The leader's empty entry of its term, then the command, on all.
        for id in 1..=3 {
            let mine: Vec<_> = applied.iter().filter(|(s, _)| *s == id).collect();
            assert_eq!(mine.last().unwrap().1, entry(1, 2, 7), "server {id}");
        }
    }

    #[test]
    fn a_vote_goes_only_to_a_log_at_least_as_up_to_date() {
        let mut voter = server(2, HardState::default(), vec![entry(2, 1, 1)]);
        voter.step(
            1,
            Message::RequestVote {
                term: 3,
                last_index: 5,
                last_term: 1,
            },
        );
        let ready = voter.take_ready();
        assert_eq!(
            ready.messages,
            vec![(
                1,
                Message::Vote {
                    term: 3,
                    granted: false
                }
            )]
        );
        // The term it learned is persisted even though it refused.
        assert_eq!(ready.hard_state.map(|h| h.term), Some(3));
    }

    #[test]
    fn one_vote_per_term_and_it_is_persisted_before_it_is_sent() {
        let mut voter = server(2, HardState::default(), Vec::new());
        let ask = |term| Message::RequestVote {
            term,
            last_index: 0,
            last_term: 0,
        };
        voter.step(1, ask(1));
        let ready = voter.take_ready();
        assert_eq!(
            ready.hard_state,
            Some(HardState {
                term: 1,
                voted_for: Some(1)
            })
        );
        voter.step(3, ask(1));
        let ready = voter.take_ready();
        assert_eq!(
            ready.messages,
            vec![(
                3,
                Message::Vote {
                    term: 1,
                    granted: false
                }
            )]
        );
    }

    #[test]
    fn a_follower_drops_entries_that_conflict_with_its_leader() {
        let old = vec![entry(1, 1, 1), entry(1, 2, 2), entry(1, 3, 3)];
        let mut follower = server(
            2,
            HardState {
                term: 1,
                voted_for: None,
            },
            old,
        );
        follower.step(
            1,
            Message::AppendEntries {
                term: 2,
                prev_index: 1,
                prev_term: 1,
                entries: vec![entry(2, 2, 20)],
                commit: 2,
            },
        );
        let ready = follower.take_ready();
        assert_eq!(ready.truncate_from, Some(2));
        assert_eq!(ready.append, vec![entry(2, 2, 20)]);
        assert_eq!(follower.last_index(), 2);
        assert_eq!(ready.committed, vec![entry(1, 1, 1), entry(2, 2, 20)]);
    }

    /// The indexes of the entries `server` has committed since it was last
    /// asked.
    fn applied(server: &mut Raft<u32>) -> Vec<Index> {
        server
            .take_ready()
            .committed
            .iter()
            .map(|e| e.index)
            .collect()
    }

    #[test]
    fn an_append_that_reaches_less_far_never_takes_the_commit_index_back() {
        let log: Vec<_> = (1..=5).map(|i| entry(1, i, i as u32)).collect();
        let mut follower = server(
            2,
            HardState {
                term: 1,
                voted_for: None,
            },
            log,
        );
        let append = |prev_index: Index, commit: Index| Message::AppendEntries {
            term: 1,
            prev_index,
            prev_term: 1,
            entries: Vec::new(),
            commit,
        };
        follower.step(1, append(5, 4));
        assert_eq!(follower.commit_index(), 4);
        // The leader has committed more, but this message (one it sent
        // again after a silence, from where it last knew the follower to
        // be) vouches only for the entries up to 2: the follower's commit
        // index stays where it was.
        follower.step(1, append(2, 5));
        assert_eq!(follower.commit_index(), 4);
        assert_eq!(applied(&mut follower), [1, 2, 3, 4]);
        follower.step(1, append(5, 5));
        assert_eq!(follower.commit_index(), 5);
        // Each entry is applied once.
        assert_eq!(applied(&mut follower), [5]);
    }

    #[test]
    fn a_follower_refuses_entries_after_a_gap_and_the_leader_backs_up() {
        let mut follower = server(2, HardState::default(), vec![entry(1, 1, 1)]);
        follower.step(
            1,
            Message::AppendEntries {
                term: 1,
                prev_index: 4,
                prev_term: 1,
                entries: vec![entry(1, 5, 5)],
                commit: 0,
            },
        );
        let ready = follower.take_ready();
        assert_eq!(
            ready.messages,
            vec![(
                1,
                Message::AppendResult {
                    term: 1,
                    success: false,
                    match_index: 1
                }
            )]
        );
        assert!(ready.append.is_empty());
    }

    #[test]
    fn a_stale_leader_is_told_the_new_term_and_steps_down() {
        let mut follower = server(
            2,
            HardState {
                term: 5,
                voted_for: None,
            },
            Vec::new(),
        );
        follower.step(
            1,
            Message::AppendEntries {
                term: 4,
                prev_index: 0,
                prev_term: 0,
                entries: vec![entry(4, 1, 1)],
                commit: 1,
            },
        );
        let ready = follower.take_ready();
        assert!(ready.append.is_empty());
        let (_, answer) = &ready.messages[0];
        assert_eq!(answer.term(), 5);

        let mut leader = server(1, HardState::default(), Vec::new());
        leader.tick(1_000);
        leader.step(
            2,
            Message::Vote {
                term: 1,
                granted: true,
            },
        );
        assert_eq!(leader.role(), Role::Leader);
        leader.step(2, answer.clone());
        assert_eq!(leader.role(), Role::Follower);
        assert_eq!(leader.term(), 5);
        assert!(leader.propose(9).is_err());
    }

    #[test]
    fn a_leader_does_not_count_entries_of_an_earlier_term_as_committed() {
        // Figure 8 of the paper: a majority holds an entry of term 2, but
        // the leader of term 4 may commit it only with an entry of its own.
        let mut leader = server(
            1,
            HardState {
                term: 3,
                voted_for: None,
            },
            vec![entry(2, 1, 1)],
        );
        leader.tick(1_000);
        assert_eq!(leader.term(), 4);
        leader.step(
            2,
            Message::Vote {
                term: 4,
                granted: true,
            },
        );
        assert_eq!(leader.role(), Role::Leader);
        leader.persisted(leader.last_index());
        // Follower 2 has index 1 (term 2) but not yet the leader's entry 2.
        leader.step(
            2,
            Message::AppendResult {
                term: 4,
                success: true,
                match_index: 1,
            },
        );
        assert_eq!(leader.commit_index(), 0);
        leader.step(
            2,
            Message::AppendResult {
                term: 4,
                success: true,
                match_index: 2,
            },
        );
        assert_eq!(leader.commit_index(), 2);
    }

    #[test]
    fn a_group_of_one_commits_only_what_it_has_synced() {
        let mut alone = Raft::new(
            1,
            &[1],
            config(),
            HardState::default(),
            None,
            Vec::new(),
            0,
            1,
        );
        alone.tick(1_000);
        assert_eq!(alone.role(), Role::Leader);
        let index = alone.propose(5u32).unwrap();
        assert_eq!(alone.commit_index(), 0);
        alone.persisted(index);
        assert_eq!(alone.commit_index(), index);
    }

    /// A leader of term 1 whose log holds `n` commands, all committed and
    /// applied with follower 2; follower 3 has answered nothing.
    fn leader_with(n: u32) -> Raft<u32> {
        let mut leader = server(1, HardState::default(), Vec::new());
        leader.tick(1_000);
        leader.step(
            2,
            Message::Vote {
                term: 1,
                granted: true,
            },
        );
        for c in 0..n {
            leader.propose(c).unwrap();
        }
        leader.persisted(leader.last_index());
        let match_index = leader.last_index();
        leader.step(
            2,
            Message::AppendResult {
                term: 1,
                success: true,
                match_index,
            },
        );
        leader.take_ready();
        leader
    }

    /// The entries of each `AppendEntries` in `ready` to `peer`.
    fn appends_to(ready: &Ready<u32>, peer: NodeId) -> Vec<Vec<Index>> {
        ready
            .messages
            .iter()
            .filter_map(|(to, msg)| match msg {
                Message::AppendEntries { entries, .. } if *to == peer => {
                    Some(entries.iter().map(|e| e.index).collect())
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_follower_slow_to_answer_is_sent_its_entries_again_only_once_its_answer_is_overdue() {
        // Follower 3 has not answered the leader's first message (its
        // empty entry, index 1) and entries 2 to 4 wait for that answer.
        let mut leader = leader_with(3);
        let resend_after = config().resend_after_ms();
        assert!(resend_after > config().heartbeat_interval_ms);
        let answer = |match_index| Message::AppendResult {
            term: 1,
            success: true,
            match_index,
        };
        // Heartbeats before the answer is overdue: follower 2, which
        // answers each, gets every one; follower 3 nothing. Sending 3 the
        // same entries every heartbeat would make a slow follower slower.
        for now in (1_010..1_000 + resend_after).step_by(10) {
            leader.tick(now);
            let ready = leader.take_ready();
            assert_eq!(appends_to(&ready, 2), vec![Vec::<Index>::new()], "at {now}");
            assert!(appends_to(&ready, 3).is_empty(), "at {now}");
            leader.step(2, answer(4));
        }
        // Overdue: the message is taken as lost, and everything is sent.
        leader.tick(1_000 + resend_after);
        assert_eq!(appends_to(&leader.take_ready(), 3), vec![vec![1, 2, 3, 4]]);
        // The answer to the first message comes after all: the one sent
        // again is still on its way, so nothing more is sent.
        leader.step(3, answer(1));
        assert!(appends_to(&leader.take_ready(), 3).is_empty());
        // Its answer ends the wait: the next entry goes at once.
        leader.step(3, answer(4));
        leader.take_ready();
        leader.propose(9).unwrap();
        assert_eq!(appends_to(&leader.take_ready(), 3), vec![vec![5]]);
    }

    #[test]
    fn compacting_lets_go_of_the_entries_up_to_the_previous_snapshot() {
        let mut leader = leader_with(9);
        let first = leader.compact(4, b"state up to 4".to_vec()).unwrap();
        assert_eq!(first.snapshot.last_index, 4);
        assert!(first.released.is_empty(), "the log still starts at 1");
        let second = leader.compact(8, b"state up to 8".to_vec()).unwrap();
        let released: Vec<Index> = second.released.iter().map(|e| e.index).collect();
        assert_eq!(released, vec![1, 2, 3, 4]);
        assert_eq!(
            leader.term_at(4),
            Some(1),
            "the edge is the first snapshot's"
        );
        assert_eq!(leader.term_at(3), None);
    }

    /// What `leader_with(9)` sends follower 3 after it compacted at 4 and
    /// then at 8 (so its log starts after 4), when 3 answers `success`
    /// with `match_index`.
    fn compacted_leader_answers(success: bool, match_index: Index) -> Ready<u32> {
        let mut leader = leader_with(9);
        assert_eq!(leader.commit_index(), 10);
        leader.compact(4, b"state up to 4".to_vec());
        leader.compact(8, b"state up to 8".to_vec());
        leader.step(
            3,
            Message::AppendResult {
                term: 1,
                success,
                match_index,
            },
        );
        leader.take_ready()
    }

    #[test]
    fn a_follower_behind_the_log_is_sent_the_snapshot() {
        // Follower 3 has nothing, and the leader backs up to it: its log
        // starts after the previous snapshot, at 5.
        let ready = compacted_leader_answers(false, 0);
        let snapshot = Snapshot {
            last_index: 8,
            last_term: 1,
            data: b"state up to 8".to_vec(),
        };
        assert_eq!(
            ready.messages,
            vec![(3, Message::InstallSnapshot { term: 1, snapshot })]
        );
    }

    #[test]
    fn a_follower_a_little_behind_the_snapshot_is_sent_entries() {
        // Follower 3 has up to 6: behind the snapshot, within the log.
        let ready = compacted_leader_answers(true, 6);
        let [
            (
                3,
                Message::AppendEntries {
                    prev_index,
                    entries,
                    ..
                },
            ),
        ] = &ready.messages[..]
        else {
            panic!("expected entries for 3, got {:?}", ready.messages);
        };
        assert_eq!(*prev_index, 6);
        let indexes: Vec<_> = entries.iter().map(|e| e.index).collect();
        assert_eq!(indexes, vec![7, 8, 9, 10]);
    }

    #[test]
    fn a_snapshot_replaces_a_log_that_disagrees_with_it() {
        let old = vec![entry(1, 1, 1), entry(1, 2, 2), entry(1, 3, 3)];
        let mut follower = server(
            2,
            HardState {
                term: 1,
                voted_for: None,
            },
            old,
        );
        let snapshot = Snapshot {
            last_index: 5,
            last_term: 2,
            data: vec![5],
        };
        follower.step(
            1,
            Message::InstallSnapshot {
                term: 2,
                snapshot: snapshot.clone(),
            },
        );
        let ready = follower.take_ready();
        assert_eq!(ready.snapshot, Some(snapshot));
        assert_eq!(ready.truncate_from, Some(1));
        assert!(ready.committed.is_empty());
        assert_eq!(follower.last_index(), 5);
        assert_eq!(follower.commit_index(), 5);
        // It goes on from the snapshot's edge.
        follower.step(
            1,
            Message::AppendEntries {
                term: 2,
                prev_index: 5,
                prev_term: 2,
                entries: vec![entry(2, 6, 6)],
                commit: 6,
            },
        );
        assert_eq!(follower.take_ready().committed, vec![entry(2, 6, 6)]);
    }

    #[test]
    fn a_snapshot_keeps_the_entries_after_it_that_agree() {
        let log = vec![entry(1, 1, 1), entry(1, 2, 2), entry(1, 3, 3)];
        let mut follower = server(
            2,
            HardState {
                term: 1,
                voted_for: None,
            },
            log,
        );
        let snapshot = Snapshot {
            last_index: 2,
            last_term: 1,
            data: vec![2],
        };
        follower.step(1, Message::InstallSnapshot { term: 1, snapshot });
        let ready = follower.take_ready();
        assert_eq!(ready.truncate_from, None);
        assert_eq!(follower.last_index(), 3);
        // Entries before the snapshot's edge are matched by it.
        follower.step(
            1,
            Message::AppendEntries {
                term: 1,
                prev_index: 0,
                prev_term: 0,
                entries: vec![entry(1, 1, 1), entry(1, 2, 2), entry(1, 3, 3)],
                commit: 3,
            },
        );
        let ready = follower.take_ready();
        assert_eq!(ready.committed, vec![entry(1, 3, 3)]);
        assert_eq!(
            ready.messages,
            vec![(
                1,
                Message::AppendResult {
                    term: 1,
                    success: true,
                    match_index: 3
                }
            )]
        );
    }

    #[test]
    fn a_server_restarts_from_its_snapshot_and_the_log_after_it() {
        let snapshot = Snapshot {
            last_index: 2,
            last_term: 1,
            data: vec![],
        };
        let log = vec![entry(1, 1, 1), entry(1, 2, 2), entry(1, 3, 3)];
        let hard = HardState {
            term: 1,
            voted_for: None,
        };
        let restarted = Raft::new(2, &[1, 2, 3], config(), hard, Some(snapshot), log, 0, 2);
        assert_eq!(restarted.last_index(), 3);
        assert_eq!(restarted.commit_index(), 2);
        // The log began before the snapshot: its first entry is the base.
        assert_eq!(restarted.term_at(0), None);
        assert_eq!(restarted.term_at(1), Some(1));
        assert_eq!(restarted.term_at(2), Some(1));
    }

    #[test]
    fn a_log_that_ends_before_the_snapshot_is_dropped_on_restart() {
        let snapshot = Snapshot {
            last_index: 5,
            last_term: 2,
            data: vec![],
        };
        let log = vec![entry(1, 1, 1), entry(1, 2, 2)];
        let hard = HardState {
            term: 2,
            voted_for: None,
        };
        let restarted = Raft::new(2, &[1, 2, 3], config(), hard, Some(snapshot), log, 0, 2);
        assert_eq!(restarted.last_index(), 5);
        assert_eq!(restarted.term_at(5), Some(2));
        assert_eq!(restarted.term_at(2), None);
    }
}
