//! The coordinator's replicated state: the data tree and the sessions, and
//! the commands the Raft log carries to change them.
//!
//! Every server applies the same committed [`LogEntry`]s, in log order, to
//! its own [`State`], so every copy is the same. What is *not* replicated
//! lives in each server: which clients are connected to it, their watches,
//! and when each session was last heard from (the leader decides when a
//! session has expired, and says so with a [`Command::CloseSession`] in the
//! log, so that every server deletes its ephemeral nodes at the same point
//! of the log).
//!
//! ## Sessions and exactly-once writes
//!
//! A client numbers its requests (ZooKeeper's `xid`). The network may
//! deliver a request twice, and a client that lost its server sends its
//! unanswered requests again to another: the log may then hold one request
//! twice. Applying it twice would be wrong (a sequential node created twice,
//! a conditional write failing the second time), so the state remembers
//! each session's last request and its answer, and answers a repeat from
//! that memory (the Raft dissertation's section 6.3). A session's requests
//! arrive in order (one connection, FIFO), so the last one is enough.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::tree::{
    Change, CreateMode, DataTree, MultiError, Op, OpResult, SessionId, Stat, TreeError, Txn,
    Version, check_create, check_set, validate_path,
};

/// A client's request that goes through the log: every write, and `sync`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Create a node; an ephemeral one belongs to the requesting session.
    Create {
        /// Its path (a sequential node's name prefix).
        path: String,
        /// Its data.
        // As bytes: one copy, not one serializer call per byte (and so
        // wherever data is kept or sent).
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        /// Whether it goes with its session.
        ephemeral: bool,
        /// Whether its name gets a counter.
        sequential: bool,
    },
    /// Delete a node, if it has `version` (or any: `ANY_VERSION`).
    Delete {
        /// The node.
        path: String,
        /// The version it must have.
        version: Version,
    },
    /// Set a node's data, if it has `version`.
    SetData {
        /// The node.
        path: String,
        /// The new data.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        /// The version it must have.
        version: Version,
    },
    /// Several operations, all or nothing.
    Multi(Vec<Op>),
    /// Changes nothing. Once a server has applied it, it has everything
    /// the leader had when it took it, so reads after it are up to date.
    Sync,
}

impl Request {
    /// What a server refuses before logging the request, without looking
    /// at the tree ([`Op::check`]): a bad path or data over the limit.
    pub fn check(&self) -> Result<(), RequestError> {
        match self {
            Request::Create {
                path,
                data,
                sequential,
                ..
            } => Ok(check_create(path, data, *sequential)?),
            Request::Delete { path, .. } => Ok(validate_path(path)?),
            Request::SetData { path, data, .. } => Ok(check_set(path, data)?),
            Request::Multi(ops) => ops.iter().enumerate().try_for_each(|(index, op)| {
                op.check()
                    .map_err(|error| MultiError { index, error }.into())
            }),
            Request::Sync => Ok(()),
        }
    }
}

/// What the Raft log carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// A client opens a session with this id (chosen by the server that
    /// took the request, unique because it includes that server's id) and
    /// timeout.
    OpenSession {
        /// The new session.
        session: SessionId,
        /// How long it may go unheard before the leader ends it.
        timeout_ms: u64,
    },
    /// The session ends: its client closed it, or the leader has not heard
    /// from it within its timeout. Its ephemeral nodes go.
    CloseSession {
        /// The session.
        session: SessionId,
    },
    /// Request `xid` of `session`.
    Request {
        /// Whose.
        session: SessionId,
        /// The session's request number, increasing.
        xid: u64,
        /// The request of the session that must take effect just before
        /// this one: the last write its client had pipelined on the same
        /// connection, not yet answered when this one came (`None` if
        /// there was none).
        after: Option<u64>,
        /// What.
        request: Request,
    },
}

/// One entry of the log: a command, and the leader's clock when it took it
/// (so that every server computes the same stats).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// The leader's clock, in ms.
    pub time: u64,
    /// The command.
    pub command: Command,
}

/// The answer to a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// A node was created, at this path.
    Created(String),
    /// A node was deleted.
    Deleted,
    /// A node's data was set; its new stat.
    Set(Stat),
    /// A `multi` succeeded; one result per operation.
    Multi(Vec<OpResult>),
    /// A `sync` went through the log.
    Synced,
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum RequestError {
    /// The tree refused it.
    #[error(transparent)]
    Tree(#[from] TreeError),
    /// A `multi` failed, at one of its operations.
    #[error(transparent)]
    Multi(#[from] MultiError),
    /// The session has ended (ZooKeeper's `SessionExpired`): its client
    /// must open a new one.
    #[error("session {session:#x} has expired")]
    SessionExpired {
        /// The session.
        session: SessionId,
    },
}

/// The result of applying one log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A session was opened.
    SessionOpened(SessionId),
    /// A session ended; these ephemeral nodes went with it.
    SessionClosed {
        /// The session.
        session: SessionId,
        /// The paths deleted.
        deleted: Vec<String>,
    },
    /// A request was answered.
    Answered {
        /// Whose.
        session: SessionId,
        /// Which.
        xid: u64,
        /// The answer.
        result: Result<Response, RequestError>,
    },
    /// Nothing to do: a repeat of a session's request older than its last,
    /// whose client has stopped waiting, or a close of a session already
    /// gone.
    Nothing,
}

/// What the state remembers of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// Its timeout.
    pub timeout_ms: u64,
    /// Its last request applied, and the answer.
    last: Option<(u64, Result<Response, RequestError>)>,
}

/// The replicated state: the tree and the open sessions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    tree: DataTree,
    sessions: BTreeMap<SessionId, SessionInfo>,
}

impl State {
    /// An empty tree and no sessions.
    pub fn new() -> State {
        State::default()
    }

    /// The tree, for reads.
    pub fn tree(&self) -> &DataTree {
        &self.tree
    }

    /// The open sessions.
    pub fn sessions(&self) -> &BTreeMap<SessionId, SessionInfo> {
        &self.sessions
    }

    /// Applies the entry at log index `index` (the tree's zxid). Returns
    /// the outcome and what changed in the tree, for the watches.
    pub fn apply(&mut self, index: u64, entry: &LogEntry) -> (Outcome, Vec<Change>) {
        let txn = Txn::new(index, entry.time);
        match &entry.command {
            &Command::OpenSession {
                session,
                timeout_ms,
            } => {
                self.sessions.insert(
                    session,
                    SessionInfo {
                        timeout_ms,
                        last: None,
                    },
                );
                (Outcome::SessionOpened(session), Vec::new())
            }
            &Command::CloseSession { session } => {
                if self.sessions.remove(&session).is_none() {
                    return (Outcome::Nothing, Vec::new());
                }
                match self.tree.close_session(txn, session) {
                    Ok(applied) => (
                        Outcome::SessionClosed {
                            session,
                            deleted: applied.result,
                        },
                        applied.changes,
                    ),
                    // Only a zxid the tree has passed fails here: an entry
                    // applied already changes nothing more.
                    Err(_) => (Outcome::Nothing, Vec::new()),
                }
            }
            Command::Request {
                session,
                xid,
                after,
                request,
            } => self.request(txn, *session, (*xid, *after), request),
        }
    }

    fn request(
        &mut self,
        txn: Txn,
        session: SessionId,
        (xid, after): (u64, Option<u64>),
        request: &Request,
    ) -> (Outcome, Vec<Change>) {
        todo!("exercise `exactly_once`: A request of a session that is not open is answered `SessionExpired`. A repeat of the session's last request (same `xid`) is answered from the session's memory, without applying it again; an older one than the last is `Outcome::Nothing`. So is one that must come `after` a request that is not the session's last (that one never made it: this one goes too). Otherwise execute it (`self.execute`), remember `(xid, result)` in the session, and answer it; only then does it change the tree.")
    }

    fn execute(
        &mut self,
        txn: Txn,
        session: SessionId,
        request: &Request,
    ) -> (Result<Response, RequestError>, Vec<Change>) {
        fn split<T>(
            applied: Result<crate::tree::Applied<T>, impl Into<RequestError>>,
            response: impl FnOnce(T) -> Response,
        ) -> (Result<Response, RequestError>, Vec<Change>) {
            match applied {
                Ok(applied) => (Ok(response(applied.result)), applied.changes),
                Err(e) => (Err(e.into()), Vec::new()),
            }
        }
        match request {
            Request::Create {
                path,
                data,
                ephemeral,
                sequential,
            } => {
                let mode = match (ephemeral, sequential) {
                    (false, false) => CreateMode::Persistent,
                    (false, true) => CreateMode::PersistentSequential,
                    (true, false) => CreateMode::Ephemeral(session),
                    (true, true) => CreateMode::EphemeralSequential(session),
                };
                let applied = self.tree.create(txn, path, data.clone(), mode);
                split(applied, Response::Created)
            }
            Request::Delete { path, version } => {
                split(self.tree.delete(txn, path, *version), |()| {
                    Response::Deleted
                })
            }
            Request::SetData {
                path,
                data,
                version,
            } => split(
                self.tree.set_data(txn, path, data.clone(), *version),
                Response::Set,
            ),
            Request::Multi(ops) => {
                // An ephemeral create inside a multi must belong to the
                // session asking, whatever owner the op names.
                let ops = ops
                    .iter()
                    .cloned()
                    .map(|op| match op {
                        Op::Create {
                            path,
                            data,
                            mode: CreateMode::Ephemeral(_),
                        } => Op::Create {
                            path,
                            data,
                            mode: CreateMode::Ephemeral(session),
                        },
                        Op::Create {
                            path,
                            data,
                            mode: CreateMode::EphemeralSequential(_),
                        } => Op::Create {
                            path,
                            data,
                            mode: CreateMode::EphemeralSequential(session),
                        },
                        op => op,
                    })
                    .collect();
                split(self.tree.multi(txn, ops), Response::Multi)
            }
            Request::Sync => (Ok(Response::Synced), Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::ANY_VERSION;

    fn entry(command: Command) -> LogEntry {
        LogEntry {
            time: 1_000,
            command,
        }
    }

    fn request(session: SessionId, xid: u64, request: Request) -> LogEntry {
        entry(Command::Request {
            session,
            xid,
            after: None,
            request,
        })
    }

    fn create(path: &str, ephemeral: bool) -> Request {
        Request::Create {
            path: path.into(),
            data: b"x".to_vec(),
            ephemeral,
            sequential: false,
        }
    }

    fn opened(state: &mut State, index: u64, session: SessionId) {
        let open = entry(Command::OpenSession {
            session,
            timeout_ms: 5_000,
        });
        assert_eq!(state.apply(index, &open).0, Outcome::SessionOpened(session));
    }

    #[test]
    fn a_request_is_applied_and_answered() {
        let mut state = State::new();
        opened(&mut state, 1, 7);
        let (outcome, changes) = state.apply(2, &request(7, 1, create("/a", false)));
        assert_eq!(
            outcome,
            Outcome::Answered {
                session: 7,
                xid: 1,
                result: Ok(Response::Created("/a".into()))
            }
        );
        assert_eq!(
            changes,
            vec![
                Change::NodeCreated("/a".into()),
                Change::NodeChildrenChanged("/".into())
            ]
        );
        assert_eq!(state.tree().exists("/a").unwrap().czxid, 2);
    }

    #[test]
    fn a_repeated_request_is_answered_again_but_applied_once() {
        let mut state = State::new();
        opened(&mut state, 1, 7);
        let sequential = Request::Create {
            path: "/q-".into(),
            data: Vec::new(),
            ephemeral: false,
            sequential: true,
        };
        let first = state.apply(2, &request(7, 1, sequential.clone()));
        let again = state.apply(3, &request(7, 1, sequential));
        assert_eq!(again.0, first.0);
        assert!(again.1.is_empty());
        assert_eq!(
            state.tree().get_children("/").unwrap(),
            vec!["q-0000000000"]
        );
        // An older one than the last is dropped.
        state.apply(4, &request(7, 2, Request::Sync));
        assert_eq!(
            state.apply(5, &request(7, 1, Request::Sync)).0,
            Outcome::Nothing
        );
    }

    #[test]
    fn a_request_pipelined_behind_one_that_never_made_it_goes_too() {
        let mut state = State::new();
        opened(&mut state, 1, 7);
        let behind = |xid, after| {
            entry(Command::Request {
                session: 7,
                xid,
                after: Some(after),
                request: create(&format!("/n{xid}"), false),
            })
        };
        state.apply(2, &request(7, 1, create("/n1", false)));
        // Request 2 never reached the log: 3, sent behind it, is dropped,
        // and 4, behind 3, with it.
        assert_eq!(state.apply(3, &behind(3, 2)).0, Outcome::Nothing);
        assert_eq!(state.apply(4, &behind(4, 3)).0, Outcome::Nothing);
        assert_eq!(state.tree().get_children("/").unwrap(), vec!["n1"]);
        // Behind the session's last, it is applied.
        let (outcome, _) = state.apply(5, &behind(5, 1));
        assert!(matches!(outcome, Outcome::Answered { xid: 5, .. }));
        assert_eq!(state.tree().get_children("/").unwrap(), vec!["n1", "n5"]);
    }

    #[test]
    fn closing_a_session_deletes_its_ephemerals_and_ends_its_requests() {
        let mut state = State::new();
        opened(&mut state, 1, 7);
        opened(&mut state, 2, 8);
        state.apply(3, &request(7, 1, create("/mine", true)));
        state.apply(4, &request(8, 1, create("/theirs", true)));
        let (outcome, changes) = state.apply(5, &entry(Command::CloseSession { session: 7 }));
        assert_eq!(
            outcome,
            Outcome::SessionClosed {
                session: 7,
                deleted: vec!["/mine".into()]
            }
        );
        assert!(changes.contains(&Change::NodeDeleted("/mine".into())));
        assert!(state.tree().exists("/theirs").is_some());
        assert_eq!(
            state.apply(6, &request(7, 2, create("/late", false))).0,
            Outcome::Answered {
                session: 7,
                xid: 2,
                result: Err(RequestError::SessionExpired { session: 7 })
            }
        );
        // Closing it again changes nothing.
        let again = state.apply(7, &entry(Command::CloseSession { session: 7 }));
        assert_eq!(again, (Outcome::Nothing, Vec::new()));
    }

    #[test]
    fn an_ephemeral_in_a_multi_belongs_to_the_session_that_asked() {
        let mut state = State::new();
        opened(&mut state, 1, 7);
        let forged = Request::Multi(vec![Op::Create {
            path: "/lock".into(),
            data: Vec::new(),
            mode: CreateMode::Ephemeral(99),
        }]);
        state.apply(2, &request(7, 1, forged));
        assert_eq!(state.tree().exists("/lock").unwrap().ephemeral_owner, 7);
    }

    #[test]
    fn a_failed_write_is_answered_with_its_error_and_changes_nothing() {
        let mut state = State::new();
        opened(&mut state, 1, 7);
        state.apply(2, &request(7, 1, create("/a", false)));
        let stale = Request::SetData {
            path: "/a".into(),
            data: b"y".to_vec(),
            version: 3,
        };
        let (outcome, changes) = state.apply(3, &request(7, 2, stale));
        let Outcome::Answered {
            result: Err(RequestError::Tree(TreeError::BadVersion { .. })),
            ..
        } = outcome
        else {
            panic!("expected BadVersion, got {outcome:?}");
        };
        assert!(changes.is_empty());
        let delete = Request::Delete {
            path: "/a".into(),
            version: ANY_VERSION,
        };
        let (outcome, _) = state.apply(4, &request(7, 3, delete));
        assert!(matches!(
            outcome,
            Outcome::Answered {
                result: Ok(Response::Deleted),
                ..
            }
        ));
    }

    #[test]
    fn the_state_survives_a_snapshot_round_trip() {
        let mut state = State::new();
        opened(&mut state, 1, 7);
        state.apply(2, &request(7, 1, create("/a", true)));
        let config = bincode::config::standard();
        let bytes = bincode::serde::encode_to_vec(&state, config).unwrap();
        let (back, _): (State, usize) = bincode::serde::decode_from_slice(&bytes, config).unwrap();
        assert_eq!(back, state);
    }
}
