//! ZooKeeper's data tree: the state machine that Raft replicates.
//!
//! Every server of the coordinator keeps a copy of a [`DataTree`]. Raft
//! decides the order of the writes; each server applies the committed
//! writes, in that order, to its own copy. The copies stay equal only if
//! applying a write is *deterministic*: its outcome may depend on the tree
//! and on the write, and on nothing else. So the tree reads no clock (the
//! leader stamps each write with its time), draws no random numbers, and
//! keeps everything in `BTreeMap`s and `BTreeSet`s, whose order is the same
//! in every process (a `HashMap`'s is not).
//!
//! ## The data model
//!
//! - **znodes.** The tree is a hierarchy of nodes, *znodes*, named by
//!   absolute paths like a file system's: `/`, `/app`, `/app/config`. Unlike
//!   a file system, every znode holds data (a few bytes, at most
//!   [`MAX_DATA`]) *and* may have children. The root `/` always exists.
//! - **The stat.** Every znode has a [`Stat`]: which transaction created it
//!   and last changed it, when, and two version counters. `version` counts
//!   the changes to its data; `cversion` counts the children created under
//!   it.
//! - **Conditional writes.** `delete` and `set_data` take the version the
//!   client expects ([`ANY_VERSION`] for "whatever it is"). If the node has
//!   moved on, the write fails with [`TreeError::BadVersion`]: this is the
//!   compare-and-set that ZooKeeper recipes are built on.
//! - **Ephemeral nodes** belong to a client session and disappear when it
//!   ends ([`DataTree::close_session`]). They cannot have children. Locks
//!   and group membership rest on them: a crashed client's lock goes away
//!   by itself.
//! - **Sequential nodes** get a counter appended to their name, taken from
//!   the parent's `cversion`, so every child created under one parent gets
//!   a different, increasing number: `/lock/n-` becomes
//!   `/lock/n-0000000003`. Queues and fair locks rest on them.
//! - **`multi`** applies several operations all or nothing.
//!
//! ## Transactions
//!
//! Every write carries a [`Txn`]: its `zxid` (ZooKeeper's "transaction
//! id"; here, the index of the Raft log entry that carries the write) and
//! its `time` (the leader's clock when it accepted the write). The stats
//! record both, so every replica computes the very same stats. The zxids
//! must increase: a write whose zxid is not above [`DataTree::last_zxid`]
//! was applied already (say, a log entry replayed after a snapshot had it),
//! and applying it twice would, for example, bump a version twice; the tree
//! refuses it with [`TreeError::ZxidNotIncreasing`]. A write that fails
//! for any other reason is still a transaction, as in ZooKeeper: it changes
//! no node, but it moves `last_zxid`.
//!
//! ## What changed, for the watches
//!
//! Watches are kept by each server for its own clients, not in the tree. To
//! fire them, a server needs to know what a write did: every successful
//! write returns, in an [`Applied`], its list of [`Change`]s, named after
//! ZooKeeper's watch events.
//!
//! ## How this differs from real ZooKeeper
//!
//! - **No ACLs**, so no `aversion` in the stat and no `getACL`/`setACL`; no
//!   quotas; no container or TTL nodes; no `/zookeeper` subtree (its quota
//!   and config nodes).
//! - **The log carries requests, not their results.** ZooKeeper's leader
//!   checks each request against the tree as it will be once the requests
//!   ahead of it are applied, and logs the *outcome* (the node with its new
//!   version, or an error) as an idempotent transaction that followers copy
//!   blindly. Here the Raft log carries the request itself, and each server
//!   checks it as it applies it. Both are deterministic, so every server
//!   reaches the same result, and the leader needs no second, speculative
//!   copy of the tree.
//! - **The zxid** is the Raft log index, not ZooKeeper's `epoch << 32 |
//!   counter`.
//! - [`MAX_DATA`] bounds a node's data. ZooKeeper bounds a whole request
//!   (`jute.maxbuffer`, just under 1 MiB by default).
//! - Children come back sorted; ZooKeeper gives them in no particular order.
//! - A write to a bad path is [`TreeError::BadArguments`], as the server
//!   answers; ZooKeeper's client library throws before sending it.
//!
//! ## Example
//!
//! ```
//! use ch07_coordinator::tree::{CreateMode, DataTree, Txn};
//!
//! let mut tree = DataTree::new();
//! tree.create(Txn::new(1, 1_000), "/lock", vec![], CreateMode::Persistent)?;
//! // Two sessions queue for the lock; the lowest number holds it.
//! let mode = CreateMode::EphemeralSequential;
//! let first = tree.create(Txn::new(2, 1_010), "/lock/n-", vec![], mode(7))?;
//! let second = tree.create(Txn::new(3, 1_020), "/lock/n-", vec![], mode(8))?;
//! assert_eq!(first.result, "/lock/n-0000000000");
//! assert_eq!(second.result, "/lock/n-0000000001");
//!
//! // Session 7 ends: its node goes, and session 8 is first in line.
//! tree.close_session(Txn::new(4, 1_030), 7)?;
//! assert_eq!(tree.get_children("/lock")?, ["n-0000000001"]);
//! # Ok::<(), ch07_coordinator::tree::TreeError>(())
//! ```

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// A transaction id: here, the index of the Raft log entry that carried the
/// write.
pub type Zxid = u64;

/// A client session's id. 0 is no session: it marks a persistent node.
pub type SessionId = u64;

/// A version counter, signed as in ZooKeeper, where `-1` in a request means
/// "any version".
pub type Version = i32;

/// The expected version that matches any version.
pub const ANY_VERSION: Version = -1;

/// The most data a znode holds, in bytes: 1 MiB. ZooKeeper is made for
/// small pieces of coordination data, not for storage.
pub const MAX_DATA: usize = 1024 * 1024;

/// The header of a write: ZooKeeper's `TxnHeader`, reduced to what the tree
/// needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Txn {
    /// The transaction's id; each write's is above the one before.
    pub zxid: Zxid,
    /// The leader's clock when it accepted the write, in milliseconds since
    /// the Unix epoch.
    pub time: u64,
}

impl Txn {
    /// The header of transaction `zxid`, accepted at `time`.
    pub fn new(zxid: Zxid, time: u64) -> Txn {
        Txn { zxid, time }
    }
}

/// A znode's metadata, with ZooKeeper's field names (but no `aversion`,
/// since there are no ACLs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stat {
    /// The zxid of the transaction that created the node.
    pub czxid: Zxid,
    /// The zxid of the transaction that last set its data (`czxid` if none
    /// did).
    pub mzxid: Zxid,
    /// The zxid of the transaction that last created or deleted one of its
    /// children (`czxid` if none did).
    pub pzxid: Zxid,
    /// When it was created (the leader's clock, in ms).
    pub ctime: u64,
    /// When its data was last set (`ctime` if never).
    pub mtime: u64,
    /// How many times its data was set: 0 at creation.
    pub version: Version,
    /// How many children were created under it: 0 at creation. Deleting a
    /// child does not move it back (nor, as in ZooKeeper, forward), so the
    /// sequential names taken from it never repeat.
    pub cversion: Version,
    /// The session that owns it if it is ephemeral, else 0.
    pub ephemeral_owner: SessionId,
    /// The length of its data, in bytes.
    pub data_length: u32,
    /// How many children it has.
    pub num_children: u32,
}

/// How to create a node. ZooKeeper's `CreateMode`, except that an ephemeral
/// mode names its owner. In ZooKeeper the owner is the session that sent
/// the request; here the server puts that session in the mode, so that the
/// tree needs no notion of who is asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CreateMode {
    /// Stays until deleted.
    Persistent,
    /// Stays until deleted; its name gets a counter appended.
    PersistentSequential,
    /// Deleted when the session that owns it ends; cannot have children.
    Ephemeral(SessionId),
    /// Ephemeral, and its name gets a counter appended.
    EphemeralSequential(SessionId),
}

impl CreateMode {
    fn is_sequential(self) -> bool {
        matches!(
            self,
            CreateMode::PersistentSequential | CreateMode::EphemeralSequential(_)
        )
    }

    /// The owning session, or `None` for a persistent node.
    fn owner(self) -> Option<SessionId> {
        match self {
            CreateMode::Persistent | CreateMode::PersistentSequential => None,
            CreateMode::Ephemeral(session) | CreateMode::EphemeralSequential(session) => {
                Some(session)
            }
        }
    }
}

/// Something a write changed, named after ZooKeeper's watch events. A
/// server fires the watches set on `path` that the event concerns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// A node was created at this path (fires `exists` watches).
    NodeCreated(String),
    /// The node at this path was deleted (fires `exists`, `getData` and
    /// `getChildren` watches on it).
    NodeDeleted(String),
    /// The data of the node at this path was set (fires `exists` and
    /// `getData` watches).
    NodeDataChanged(String),
    /// A child was created or deleted under the node at this path (fires
    /// `getChildren` watches).
    NodeChildrenChanged(String),
}

impl Change {
    /// The path the event is about.
    pub fn path(&self) -> &str {
        match self {
            Change::NodeCreated(path)
            | Change::NodeDeleted(path)
            | Change::NodeDataChanged(path)
            | Change::NodeChildrenChanged(path) => path,
        }
    }
}

/// What a successful write returns: its result, and what it changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied<T> {
    /// The write's result.
    pub result: T,
    /// What it changed, in the order it happened, for the watches.
    pub changes: Vec<Change>,
}

/// One operation of a [`DataTree::multi`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// As [`DataTree::create`].
    Create {
        /// The path (for a sequential node, the prefix of its name).
        path: String,
        /// Its data.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        /// How to create it.
        mode: CreateMode,
    },
    /// As [`DataTree::delete`].
    Delete {
        /// The node to delete.
        path: String,
        /// The version it must have, or [`ANY_VERSION`].
        version: Version,
    },
    /// As [`DataTree::set_data`].
    SetData {
        /// The node to update.
        path: String,
        /// Its new data.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        /// The version it must have, or [`ANY_VERSION`].
        version: Version,
    },
    /// Changes nothing, but fails the whole `multi` unless the node exists
    /// with this version: how a `multi` makes its writes depend on a node
    /// it does not write.
    Check {
        /// The node to check.
        path: String,
        /// The version it must have, or [`ANY_VERSION`].
        version: Version,
    },
}

impl Op {
    /// What can be refused without looking at the tree: a path that is not
    /// a ZooKeeper path, data over [`MAX_DATA`]. A server checks this before
    /// logging a write (as ZooKeeper's `PrepRequestProcessor` does), so a
    /// bad request costs no replication; the tree checks it again when it
    /// applies one.
    pub fn check(&self) -> Result<(), TreeError> {
        match self {
            Op::Create { path, data, mode } => check_create(path, data, mode.is_sequential()),
            Op::SetData { path, data, .. } => check_set(path, data),
            Op::Delete { path, .. } | Op::Check { path, .. } => validate_path(path),
        }
    }
}

/// The result of one operation of a successful [`DataTree::multi`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpResult {
    /// A node was created.
    Create {
        /// Its actual path (with its counter, if sequential).
        path: String,
    },
    /// A node was deleted.
    Delete,
    /// A node's data was set.
    SetData {
        /// Its stat after the write.
        stat: Stat,
    },
    /// A check passed.
    Check,
}

/// Why a read or a write failed, by ZooKeeper's error names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum TreeError {
    /// The node does not exist. For a `create`, this is the missing parent.
    #[error("no node {path}")]
    NoNode {
        /// The missing node's path.
        path: String,
    },
    /// A `create` found a node at its path.
    #[error("node {path} already exists")]
    NodeExists {
        /// The path.
        path: String,
    },
    /// A conditional write expected another version.
    #[error("bad version for {path}: expected {expected}, found {actual}")]
    BadVersion {
        /// The node's path.
        path: String,
        /// The version the write expected.
        expected: Version,
        /// The node's version.
        actual: Version,
    },
    /// A `delete` of a node that has children.
    #[error("node {path} has children")]
    NotEmpty {
        /// The node's path.
        path: String,
    },
    /// A `create` under an ephemeral node.
    #[error("cannot create {path}: ephemeral nodes cannot have children")]
    NoChildrenForEphemerals {
        /// The path of the node that was to be created.
        path: String,
    },
    /// The request itself is wrong: a bad path, too much data, ...
    #[error("bad arguments for {path}: {reason}")]
    BadArguments {
        /// The path of the request.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The write's zxid is not above the last one applied: it was applied
    /// already, or the caller mixed up its transactions. Nothing changed.
    #[error("transaction {zxid} is not after the last one applied, {last_zxid}")]
    ZxidNotIncreasing {
        /// The write's zxid.
        zxid: Zxid,
        /// The tree's last zxid.
        last_zxid: Zxid,
    },
}

/// Why a [`DataTree::multi`] failed: its first failing operation. None of
/// its operations took effect.
///
/// ZooKeeper answers a failed `multi` with one result per operation: the
/// ones before `index` say `Ok` (they were rolled back), the one at `index`
/// has `error`, and the ones after say `RuntimeInconsistency` (they were
/// not tried). `index` and `error` are all a server needs to build that
/// list. A refused zxid fails the `multi` as a whole, with `index` 0.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("multi failed at operation {index}: {error}")]
pub struct MultiError {
    /// The position of the failing operation in the `multi`.
    pub index: usize,
    /// Why it failed.
    pub error: TreeError,
}

/// One node of the tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Znode {
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
    czxid: Zxid,
    mzxid: Zxid,
    pzxid: Zxid,
    ctime: u64,
    mtime: u64,
    version: Version,
    cversion: Version,
    ephemeral_owner: SessionId,
    /// The names (not paths) of its children. ZooKeeper keeps the same set
    /// in each node, so that listing the children of a node does not scan
    /// the whole tree.
    children: BTreeSet<String>,
}

impl Znode {
    fn new(txn: Txn, data: Vec<u8>, ephemeral_owner: SessionId) -> Znode {
        Znode {
            data,
            czxid: txn.zxid,
            mzxid: txn.zxid,
            pzxid: txn.zxid,
            ctime: txn.time,
            mtime: txn.time,
            version: 0,
            cversion: 0,
            ephemeral_owner,
            children: BTreeSet::new(),
        }
    }

    /// The stat as clients see it. As in ZooKeeper, the data's length and
    /// the number of children are not stored but computed, so they cannot
    /// disagree with the data and the children.
    fn stat(&self) -> Stat {
        Stat {
            czxid: self.czxid,
            mzxid: self.mzxid,
            pzxid: self.pzxid,
            ctime: self.ctime,
            mtime: self.mtime,
            version: self.version,
            cversion: self.cversion,
            ephemeral_owner: self.ephemeral_owner,
            data_length: u32::try_from(self.data.len()).unwrap_or(u32::MAX),
            num_children: u32::try_from(self.children.len()).unwrap_or(u32::MAX),
        }
    }
}

/// How to take back one applied operation, for a `multi` that fails
/// half-way. Each records just what its operation overwrote.
#[derive(Debug)]
enum Undo {
    /// Remove the node created at `path`, and give its parent back its
    /// child version and pzxid.
    Create {
        path: String,
        parent_cversion: Version,
        parent_pzxid: Zxid,
    },
    /// Put back the node deleted from `path`, and its parent's pzxid.
    Delete {
        path: String,
        node: Znode,
        parent_pzxid: Zxid,
    },
    /// Give the node at `path` back its data and what setting it changed.
    SetData {
        path: String,
        data: Vec<u8>,
        version: Version,
        mzxid: Zxid,
        mtime: u64,
    },
}

/// ZooKeeper's data tree. See the module's docs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataTree {
    /// Every node, by path. The root's key is `/`.
    nodes: BTreeMap<String, Znode>,
    /// The paths of every session's ephemeral nodes, so that closing a
    /// session does not scan the whole tree. A session with none has no
    /// entry, so that two trees with the same nodes compare equal.
    ephemerals: BTreeMap<SessionId, BTreeSet<String>>,
    /// The zxid of the last transaction applied, successful or not.
    last_zxid: Zxid,
}

impl Default for DataTree {
    fn default() -> Self {
        DataTree::new()
    }
}

impl DataTree {
    /// A tree with just its root, `/`, whose stat is all zeros.
    pub fn new() -> DataTree {
        let root = Znode::new(Txn::new(0, 0), Vec::new(), 0);
        DataTree {
            nodes: BTreeMap::from([("/".to_string(), root)]),
            ephemerals: BTreeMap::new(),
            last_zxid: 0,
        }
    }

    /// The zxid of the last transaction applied (0 if none was). After a
    /// restart from a snapshot, the log is replayed from the entry after
    /// this one.
    pub fn last_zxid(&self) -> Zxid {
        self.last_zxid
    }

    // Reads. They change nothing, so they take no transaction.

    /// The stat of the node at `path`, if there is one. A path that is not
    /// valid names no node, so it gives `None` too.
    pub fn exists(&self, path: &str) -> Option<Stat> {
        self.nodes.get(path).map(Znode::stat)
    }

    /// The data and stat of the node at `path`.
    pub fn get_data(&self, path: &str) -> Result<(&[u8], Stat), TreeError> {
        let node = self.node(path)?;
        Ok((&node.data, node.stat()))
    }

    /// The names of the children of the node at `path`, sorted.
    pub fn get_children(&self, path: &str) -> Result<Vec<String>, TreeError> {
        Ok(self.node(path)?.children.iter().cloned().collect())
    }

    /// The paths of the ephemeral nodes that `session` owns, sorted
    /// (ZooKeeper's `getEphemerals`).
    pub fn ephemerals(&self, session: SessionId) -> Vec<String> {
        self.ephemerals
            .get(&session)
            .map(|paths| paths.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Every node's path, sorted, the root first.
    pub fn paths(&self) -> impl Iterator<Item = &str> + '_ {
        self.nodes.keys().map(String::as_str)
    }

    fn node(&self, path: &str) -> Result<&Znode, TreeError> {
        validate_path(path)?;
        self.nodes.get(path).ok_or_else(|| no_node(path))
    }

    // Writes. Each starts with `begin`, which refuses a stale zxid and
    // otherwise records it, and then checks everything that can fail
    // before it changes anything: a write that fails leaves every node as
    // it was.

    /// Creates a node at `path` with `data`, and returns its actual path:
    /// for a sequential node, `path` followed by its parent's `cversion` in
    /// 10 digits.
    ///
    /// Fails with [`TreeError::NoNode`] (naming the parent) if the parent
    /// does not exist, [`TreeError::NodeExists`] if the node does,
    /// [`TreeError::NoChildrenForEphemerals`] if the parent is ephemeral,
    /// and [`TreeError::BadArguments`] for a bad path, too much data, or an
    /// ephemeral owned by session 0.
    pub fn create(
        &mut self,
        txn: Txn,
        path: &str,
        data: Vec<u8>,
        mode: CreateMode,
    ) -> Result<Applied<String>, TreeError> {
        self.begin(txn)?;
        let mut changes = Vec::new();
        let (created, _) = self.create_node(txn, path, data, mode, &mut changes)?;
        Ok(Applied {
            result: created,
            changes,
        })
    }

    /// Deletes the node at `path` if its version is `version` (or
    /// `version` is [`ANY_VERSION`]).
    ///
    /// Fails with [`TreeError::NoNode`], [`TreeError::BadVersion`],
    /// [`TreeError::NotEmpty`] if it has children (ZooKeeper deletes one
    /// node at a time), and [`TreeError::BadArguments`] for a bad path or
    /// the root.
    pub fn delete(
        &mut self,
        txn: Txn,
        path: &str,
        version: Version,
    ) -> Result<Applied<()>, TreeError> {
        self.begin(txn)?;
        let mut changes = Vec::new();
        self.delete_node(txn, path, version, &mut changes)?;
        Ok(Applied {
            result: (),
            changes,
        })
    }

    /// Replaces the data of the node at `path` if its version is `version`
    /// (or `version` is [`ANY_VERSION`]), and returns its new stat.
    ///
    /// Fails with [`TreeError::NoNode`], [`TreeError::BadVersion`], and
    /// [`TreeError::BadArguments`] for a bad path or too much data.
    pub fn set_data(
        &mut self,
        txn: Txn,
        path: &str,
        data: Vec<u8>,
        version: Version,
    ) -> Result<Applied<Stat>, TreeError> {
        self.begin(txn)?;
        let mut changes = Vec::new();
        let (stat, _) = self.set_node_data(txn, path, data, version, &mut changes)?;
        Ok(Applied {
            result: stat,
            changes,
        })
    }

    /// Applies `ops` in order, all or nothing, as one transaction: every
    /// node they create or change gets the same zxid. On success, one
    /// result per operation; on failure, the first failing operation, and
    /// the tree is as it was.
    ///
    /// Each operation sees the ones before it: a `multi` may create `/a`
    /// and then `/a/b`.
    pub fn multi(&mut self, txn: Txn, ops: Vec<Op>) -> Result<Applied<Vec<OpResult>>, MultiError> {
        self.begin(txn)
            .map_err(|error| MultiError { index: 0, error })?;
        let mut results = Vec::with_capacity(ops.len());
        let mut changes = Vec::new();
        let mut undo_log = Vec::with_capacity(ops.len());
        for (index, op) in ops.into_iter().enumerate() {
            match self.apply_op(txn, op, &mut changes) {
                Ok((result, undo)) => {
                    results.push(result);
                    undo_log.extend(undo);
                }
                Err(error) => {
                    // Take back what the earlier operations did, the last
                    // first, so that each undo finds the tree as its
                    // operation left it. The failing operation itself
                    // changed nothing.
                    for undo in undo_log.into_iter().rev() {
                        self.undo(undo);
                    }
                    return Err(MultiError { index, error });
                }
            }
        }
        Ok(Applied {
            result: results,
            changes,
        })
    }

    /// Ends `session`: deletes every ephemeral node it owns, and returns
    /// their paths, sorted. Fails only for a stale zxid.
    pub fn close_session(
        &mut self,
        txn: Txn,
        session: SessionId,
    ) -> Result<Applied<Vec<String>>, TreeError> {
        self.begin(txn)?;
        let paths: Vec<String> = self
            .ephemerals
            .remove(&session)
            .unwrap_or_default()
            .into_iter()
            .collect();
        let mut changes = Vec::new();
        // Ephemeral nodes have no children, so they can go in any order:
        // none is in the way of another.
        for path in &paths {
            self.unlink(txn, path, &mut changes);
        }
        Ok(Applied {
            result: paths,
            changes,
        })
    }

    /// Refuses a zxid that is not above the last one, else records it.
    fn begin(&mut self, txn: Txn) -> Result<(), TreeError> {
        if txn.zxid <= self.last_zxid {
            return Err(TreeError::ZxidNotIncreasing {
                zxid: txn.zxid,
                last_zxid: self.last_zxid,
            });
        }
        self.last_zxid = txn.zxid;
        Ok(())
    }

    /// Applies one operation of a `multi`, and says how to take it back.
    fn apply_op(
        &mut self,
        txn: Txn,
        op: Op,
        changes: &mut Vec<Change>,
    ) -> Result<(OpResult, Option<Undo>), TreeError> {
        match op {
            Op::Create { path, data, mode } => {
                let (path, undo) = self.create_node(txn, &path, data, mode, changes)?;
                Ok((OpResult::Create { path }, Some(undo)))
            }
            Op::Delete { path, version } => {
                let undo = self.delete_node(txn, &path, version, changes)?;
                Ok((OpResult::Delete, Some(undo)))
            }
            Op::SetData {
                path,
                data,
                version,
            } => {
                let (stat, undo) = self.set_node_data(txn, &path, data, version, changes)?;
                Ok((OpResult::SetData { stat }, Some(undo)))
            }
            Op::Check { path, version } => {
                let node = self.node(&path)?;
                check_version(&path, version, node.version)?;
                Ok((OpResult::Check, None))
            }
        }
    }

    fn create_node(
        &mut self,
        txn: Txn,
        path: &str,
        data: Vec<u8>,
        mode: CreateMode,
        changes: &mut Vec<Change>,
    ) -> Result<(String, Undo), TreeError> {
        let sequential = mode.is_sequential();
        check_create(path, &data, sequential)?;
        let owner = match mode.owner() {
            Some(0) => {
                return Err(bad_arguments(
                    path,
                    "session 0 cannot own an ephemeral node, since 0 marks persistent ones".into(),
                ));
            }
            Some(session) => session,
            None => 0,
        };
        if !sequential && path == "/" {
            return Err(TreeError::NodeExists { path: path.into() });
        }

        let (parent_path, base) = split(path);
        let parent = self
            .nodes
            .get_mut(parent_path)
            .ok_or_else(|| no_node(parent_path))?;
        let name = if sequential {
            // `{:010}` pads as Java's `%010d`, the sign first: a counter
            // that wrapped past `i32::MAX` gives `-2147483648`, as in
            // ZooKeeper.
            format!("{base}{:010}", parent.cversion)
        } else {
            base.to_string()
        };
        let full = join(parent_path, &name);
        // The parent's set of children says whether the node exists, and
        // spares a second lookup while the parent is borrowed.
        if parent.children.contains(&name) {
            return Err(TreeError::NodeExists { path: full });
        }
        if parent.ephemeral_owner != 0 {
            return Err(TreeError::NoChildrenForEphemerals { path: full });
        }

        // Everything checked: from here on, nothing fails.
        let undo = Undo::Create {
            path: full.clone(),
            parent_cversion: parent.cversion,
            parent_pzxid: parent.pzxid,
        };
        parent.children.insert(name);
        parent.cversion = parent.cversion.wrapping_add(1);
        parent.pzxid = txn.zxid;
        self.nodes
            .insert(full.clone(), Znode::new(txn, data, owner));
        if owner != 0 {
            self.ephemerals
                .entry(owner)
                .or_default()
                .insert(full.clone());
        }
        changes.push(Change::NodeCreated(full.clone()));
        changes.push(Change::NodeChildrenChanged(parent_path.to_string()));
        Ok((full, undo))
    }

    fn delete_node(
        &mut self,
        txn: Txn,
        path: &str,
        version: Version,
        changes: &mut Vec<Change>,
    ) -> Result<Undo, TreeError> {
        validate_path(path)?;
        if path == "/" {
            return Err(bad_arguments(path, "the root cannot be deleted".into()));
        }
        let node = self.nodes.get(path).ok_or_else(|| no_node(path))?;
        // As in ZooKeeper, a wrong version is reported before children.
        check_version(path, version, node.version)?;
        if !node.children.is_empty() {
            return Err(TreeError::NotEmpty { path: path.into() });
        }
        self.unlink(txn, path, changes).ok_or_else(|| no_node(path))
    }

    fn set_node_data(
        &mut self,
        txn: Txn,
        path: &str,
        data: Vec<u8>,
        version: Version,
        changes: &mut Vec<Change>,
    ) -> Result<(Stat, Undo), TreeError> {
        validate_path(path)?;
        check_data(path, &data)?;
        let node = self.nodes.get_mut(path).ok_or_else(|| no_node(path))?;
        check_version(path, version, node.version)?;
        let undo = Undo::SetData {
            path: path.to_string(),
            data: std::mem::replace(&mut node.data, data),
            version: node.version,
            mzxid: node.mzxid,
            mtime: node.mtime,
        };
        node.version = next_version(node.version);
        node.mzxid = txn.zxid;
        node.mtime = txn.time;
        changes.push(Change::NodeDataChanged(path.to_string()));
        Ok((node.stat(), undo))
    }

    /// Removes the node at `path` (which has no children) from the tree,
    /// its parent and its session's index; `None` if there is none.
    fn unlink(&mut self, txn: Txn, path: &str, changes: &mut Vec<Change>) -> Option<Undo> {
        let node = self.nodes.remove(path)?;
        let (parent_path, name) = split(path);
        let mut parent_pzxid = 0;
        if let Some(parent) = self.nodes.get_mut(parent_path) {
            parent.children.remove(name);
            parent_pzxid = parent.pzxid;
            // A deletion moves the parent's pzxid, but not its cversion:
            // ZooKeeper counts only creations there.
            parent.pzxid = txn.zxid;
        }
        self.forget_ephemeral(node.ephemeral_owner, path);
        changes.push(Change::NodeDeleted(path.to_string()));
        changes.push(Change::NodeChildrenChanged(parent_path.to_string()));
        Some(Undo::Delete {
            path: path.to_string(),
            node,
            parent_pzxid,
        })
    }

    fn forget_ephemeral(&mut self, owner: SessionId, path: &str) {
        if let Some(paths) = self.ephemerals.get_mut(&owner) {
            paths.remove(path);
            if paths.is_empty() {
                self.ephemerals.remove(&owner);
            }
        }
    }

    fn undo(&mut self, undo: Undo) {
        match undo {
            Undo::Create {
                path,
                parent_cversion,
                parent_pzxid,
            } => {
                if let Some(node) = self.nodes.remove(&path) {
                    self.forget_ephemeral(node.ephemeral_owner, &path);
                }
                let (parent_path, name) = split(&path);
                if let Some(parent) = self.nodes.get_mut(parent_path) {
                    parent.children.remove(name);
                    parent.cversion = parent_cversion;
                    parent.pzxid = parent_pzxid;
                }
            }
            Undo::Delete {
                path,
                node,
                parent_pzxid,
            } => {
                let (parent_path, name) = split(&path);
                if let Some(parent) = self.nodes.get_mut(parent_path) {
                    parent.children.insert(name.to_string());
                    parent.pzxid = parent_pzxid;
                }
                if node.ephemeral_owner != 0 {
                    self.ephemerals
                        .entry(node.ephemeral_owner)
                        .or_default()
                        .insert(path.clone());
                }
                self.nodes.insert(path, node);
            }
            Undo::SetData {
                path,
                data,
                version,
                mzxid,
                mtime,
            } => {
                if let Some(node) = self.nodes.get_mut(&path) {
                    node.data = data;
                    node.version = version;
                    node.mzxid = mzxid;
                    node.mtime = mtime;
                }
            }
        }
    }
}

/// Checks `path` by ZooKeeper's rules (`PathUtils.validatePath`): it starts
/// with `/`, does not end with `/` (unless it is the root), has no empty
/// names (`//`), no `.` or `..` names, and no null, control or
/// private-use characters.
pub fn validate_path(path: &str) -> Result<(), TreeError> {
    match path_problem(path) {
        Some(reason) => Err(bad_arguments(path, reason)),
        None => Ok(()),
    }
}

/// What is wrong with `path`, if anything.
fn path_problem(path: &str) -> Option<String> {
    let Some(rest) = path.strip_prefix('/') else {
        return Some("a path must start with '/'".into());
    };
    if rest.is_empty() {
        return None;
    }
    if rest.ends_with('/') {
        return Some("a path must not end with '/'".into());
    }
    for name in rest.split('/') {
        if name.is_empty() {
            return Some("a path must not have an empty node name".into());
        }
        if name == "." || name == ".." {
            return Some(format!(
                "a path must not have a relative node name, {name:?}"
            ));
        }
    }
    // ZooKeeper also forbids the surrogates (U+D800 to U+DFFF); a Rust
    // string cannot hold them in the first place.
    path.chars()
        .find(|c| {
            matches!(c,
                '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{e000}'..='\u{f8ff}' | '\u{fff0}'..='\u{ffff}')
        })
        .map(|c| format!("a path must not contain the character {c:?}"))
}

/// A create's path and data, as [`Op::check`]. A sequential path is
/// checked with a counter in place, as ZooKeeper does: `/lock/` is a fine
/// prefix, since the node will be `/lock/0000000000`.
pub fn check_create(path: &str, data: &[u8], sequential: bool) -> Result<(), TreeError> {
    let checked = if sequential {
        format!("{path}0")
    } else {
        path.to_string()
    };
    if let Some(reason) = path_problem(&checked) {
        return Err(bad_arguments(path, reason));
    }
    check_data(path, data)
}

/// A set's path and data, as [`Op::check`].
pub fn check_set(path: &str, data: &[u8]) -> Result<(), TreeError> {
    validate_path(path)?;
    check_data(path, data)
}

fn check_data(path: &str, data: &[u8]) -> Result<(), TreeError> {
    if data.len() > MAX_DATA {
        return Err(bad_arguments(
            path,
            format!(
                "{} bytes of data, more than the {MAX_DATA} allowed",
                data.len()
            ),
        ));
    }
    Ok(())
}

fn check_version(path: &str, expected: Version, actual: Version) -> Result<(), TreeError> {
    if expected != ANY_VERSION && expected != actual {
        return Err(TreeError::BadVersion {
            path: path.into(),
            expected,
            actual,
        });
    }
    Ok(())
}

/// The version after `version`. It wraps around as a Java `int` does, but
/// skips -1: a node at version -1 could not be written conditionally, since
/// -1 means "any version" (ZooKeeper's ZOOKEEPER-4743).
fn next_version(version: Version) -> Version {
    match version.wrapping_add(1) {
        ANY_VERSION => 0,
        next => next,
    }
}

/// Splits a valid path, other than the root, into its parent's path and its
/// own name: `/a/b` into `/a` and `b`, `/a` into `/` and `a`. (A sequential
/// prefix may end with `/`: `/lock/` gives `/lock` and an empty name, to
/// which the counter is appended.)
fn split(path: &str) -> (&str, &str) {
    let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
    (if parent.is_empty() { "/" } else { parent }, name)
}

/// The path of child `name` of the node at `parent`.
fn join(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

fn no_node(path: &str) -> TreeError {
    TreeError::NoNode { path: path.into() }
}

fn bad_arguments(path: &str, reason: String) -> TreeError {
    TreeError::BadArguments {
        path: path.into(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use CreateMode::{Ephemeral, EphemeralSequential, Persistent, PersistentSequential};

    fn txn(zxid: Zxid) -> Txn {
        // A time that differs from the zxid, so a test notices a mix-up.
        Txn::new(zxid, 1_000 + 10 * zxid)
    }

    /// A tree with `/a` (zxid 1) and `/a/b` (zxid 2), both persistent.
    fn tree_ab() -> DataTree {
        let mut tree = DataTree::new();
        tree.create(txn(1), "/a", b"a".to_vec(), Persistent)
            .unwrap();
        tree.create(txn(2), "/a/b", b"b".to_vec(), Persistent)
            .unwrap();
        tree
    }

    fn bad_arguments(err: TreeError, path: &str) {
        match err {
            TreeError::BadArguments { path: p, .. } => assert_eq!(p, path),
            other => panic!("expected BadArguments for {path}, got {other:?}"),
        }
    }

    /// The nodes and the session index, but not `last_zxid`, which a
    /// failed write moves.
    fn content(
        tree: &DataTree,
    ) -> (
        BTreeMap<String, Znode>,
        BTreeMap<SessionId, BTreeSet<String>>,
    ) {
        (tree.nodes.clone(), tree.ephemerals.clone())
    }

    #[test]
    fn a_new_tree_has_only_the_root() {
        let tree = DataTree::new();
        assert_eq!(tree.paths().collect::<Vec<_>>(), ["/"]);
        assert_eq!(tree.exists("/"), Some(Stat::default()));
        assert_eq!(tree.get_data("/").unwrap(), (&[][..], Stat::default()));
        assert!(tree.get_children("/").unwrap().is_empty());
        assert_eq!(tree.last_zxid(), 0);
        assert_eq!(DataTree::default(), tree);
    }

    #[test]
    fn valid_paths_pass() {
        for path in [
            "/",
            "/a",
            "/a/b",
            "/a.b",
            "/...",
            "/a/.b",
            "/zookeeper",
            "/é/ü",
        ] {
            assert_eq!(validate_path(path), Ok(()), "{path}");
        }
    }

    #[test]
    fn invalid_paths_are_bad_arguments() {
        for path in [
            "",
            "a",
            "a/b",
            "/a/",
            "//",
            "/a//b",
            "/.",
            "/..",
            "/a/.",
            "/a/../b",
            "/a\0b",
            "/a\u{1}",
            "/a\u{7f}",
            "/a\u{e000}",
            "/a\u{fff0}",
        ] {
            bad_arguments(validate_path(path).unwrap_err(), path);
        }
    }

    #[test]
    fn writes_to_invalid_paths_are_bad_arguments_and_change_nothing() {
        let mut tree = tree_ab();
        let before = content(&tree);
        let err = tree
            .create(txn(3), "/a/b/", vec![], Persistent)
            .unwrap_err();
        bad_arguments(err, "/a/b/");
        bad_arguments(
            tree.delete(txn(4), "/a//b", ANY_VERSION).unwrap_err(),
            "/a//b",
        );
        let err = tree
            .set_data(txn(5), "/a/./b", vec![], ANY_VERSION)
            .unwrap_err();
        bad_arguments(err, "/a/./b");
        bad_arguments(tree.get_data("a").unwrap_err(), "a");
        bad_arguments(tree.get_children("/a/").unwrap_err(), "/a/");
        assert_eq!(tree.exists("/a/"), None);
        assert_eq!(content(&tree), before);
    }

    #[test]
    fn create_sets_the_stat_and_updates_the_parent() {
        let mut tree = DataTree::new();
        let applied = tree
            .create(txn(1), "/a", b"hello".to_vec(), Persistent)
            .unwrap();
        assert_eq!(applied.result, "/a");
        let (data, stat) = tree.get_data("/a").unwrap();
        assert_eq!(data, b"hello");
        assert_eq!(
            stat,
            Stat {
                czxid: 1,
                mzxid: 1,
                pzxid: 1,
                ctime: 1_010,
                mtime: 1_010,
                version: 0,
                cversion: 0,
                ephemeral_owner: 0,
                data_length: 5,
                num_children: 0,
            }
        );
        tree.create(txn(2), "/a/b", vec![], Persistent).unwrap();
        let parent = tree.exists("/a").unwrap();
        assert_eq!(parent.cversion, 1);
        assert_eq!(parent.pzxid, 2);
        assert_eq!(parent.num_children, 1);
        // Creating a child is not a change to the parent's data.
        assert_eq!((parent.mzxid, parent.mtime, parent.version), (1, 1_010, 0));
        let root = tree.exists("/").unwrap();
        assert_eq!((root.cversion, root.pzxid, root.num_children), (1, 1, 1));
        assert_eq!(tree.last_zxid(), 2);
    }

    #[test]
    fn create_reports_what_changed() {
        let mut tree = DataTree::new();
        let applied = tree.create(txn(1), "/a", vec![], Persistent).unwrap();
        assert_eq!(
            applied.changes,
            [
                Change::NodeCreated("/a".into()),
                Change::NodeChildrenChanged("/".into()),
            ]
        );
        let applied = tree.create(txn(2), "/a/b", vec![], Persistent).unwrap();
        assert_eq!(
            applied.changes,
            [
                Change::NodeCreated("/a/b".into()),
                Change::NodeChildrenChanged("/a".into()),
            ]
        );
        assert_eq!(applied.changes[1].path(), "/a");
    }

    #[test]
    fn create_errors() {
        let mut tree = tree_ab();
        let before = content(&tree);
        assert_eq!(
            tree.create(txn(3), "/a/b", vec![], Persistent).unwrap_err(),
            TreeError::NodeExists {
                path: "/a/b".into()
            }
        );
        assert_eq!(
            tree.create(txn(4), "/", vec![], Persistent).unwrap_err(),
            TreeError::NodeExists { path: "/".into() }
        );
        assert_eq!(
            tree.create(txn(5), "/x/y", vec![], Persistent).unwrap_err(),
            TreeError::NoNode { path: "/x".into() }
        );
        let err = tree.create(txn(6), "/e", vec![], Ephemeral(0)).unwrap_err();
        bad_arguments(err, "/e");
        assert_eq!(content(&tree), before);
        // Failed writes are transactions too.
        assert_eq!(tree.last_zxid(), 6);
    }

    #[test]
    fn data_is_limited_to_max_data() {
        let mut tree = DataTree::new();
        tree.create(txn(1), "/big", vec![7; MAX_DATA], Persistent)
            .unwrap();
        assert_eq!(tree.exists("/big").unwrap().data_length, MAX_DATA as u32);
        let err = tree
            .create(txn(2), "/bigger", vec![7; MAX_DATA + 1], Persistent)
            .unwrap_err();
        bad_arguments(err, "/bigger");
        let err = tree
            .set_data(txn(3), "/big", vec![7; MAX_DATA + 1], ANY_VERSION)
            .unwrap_err();
        bad_arguments(err, "/big");
        assert_eq!(tree.exists("/bigger"), None);
        assert_eq!(tree.exists("/big").unwrap().version, 0);
    }

    #[test]
    fn sequential_names_come_from_the_parent_cversion() {
        let mut tree = DataTree::new();
        tree.create(txn(1), "/lock", vec![], Persistent).unwrap();
        // A plain child moves the counter too.
        tree.create(txn(2), "/lock/other", vec![], Persistent)
            .unwrap();
        let first = tree
            .create(txn(3), "/lock/n-", vec![], PersistentSequential)
            .unwrap();
        assert_eq!(first.result, "/lock/n-0000000001");
        assert_eq!(
            first.changes[0],
            Change::NodeCreated("/lock/n-0000000001".into())
        );
        tree.create(txn(4), "/lock/n-", vec![], EphemeralSequential(9))
            .unwrap();
        // Deleting children does not move the counter back.
        tree.delete(txn(5), "/lock/n-0000000001", ANY_VERSION)
            .unwrap();
        tree.delete(txn(6), "/lock/n-0000000002", ANY_VERSION)
            .unwrap();
        let next = tree
            .create(txn(7), "/lock/n-", vec![], PersistentSequential)
            .unwrap();
        assert_eq!(next.result, "/lock/n-0000000003");
        assert_eq!(
            tree.get_children("/lock").unwrap(),
            ["n-0000000003", "other"]
        );
    }

    #[test]
    fn a_sequential_prefix_may_end_with_a_slash() {
        let mut tree = DataTree::new();
        tree.create(txn(1), "/q", vec![], Persistent).unwrap();
        assert_eq!(
            tree.create(txn(2), "/q/", vec![], PersistentSequential)
                .unwrap()
                .result,
            "/q/0000000000"
        );
        assert_eq!(
            tree.create(txn(3), "/", vec![], PersistentSequential)
                .unwrap()
                .result,
            "/0000000001"
        );
        // But not in other places, nor without the counter.
        bad_arguments(
            tree.create(txn(4), "/q//", vec![], PersistentSequential)
                .unwrap_err(),
            "/q//",
        );
        bad_arguments(
            tree.create(txn(5), "/q/", vec![], Persistent).unwrap_err(),
            "/q/",
        );
    }

    #[test]
    fn a_sequential_name_that_exists_is_node_exists() {
        let mut tree = DataTree::new();
        tree.create(txn(1), "/n0000000001", vec![], Persistent)
            .unwrap();
        assert_eq!(
            tree.create(txn(2), "/n", vec![], PersistentSequential)
                .unwrap_err(),
            TreeError::NodeExists {
                path: "/n0000000001".into()
            }
        );
    }

    #[test]
    fn ephemerals_are_owned_and_have_no_children() {
        let mut tree = DataTree::new();
        tree.create(txn(1), "/e", vec![], Ephemeral(5)).unwrap();
        assert_eq!(tree.exists("/e").unwrap().ephemeral_owner, 5);
        assert_eq!(tree.ephemerals(5), ["/e"]);
        assert!(tree.ephemerals(6).is_empty());
        let before = content(&tree);
        assert_eq!(
            tree.create(txn(2), "/e/child", vec![], Persistent)
                .unwrap_err(),
            TreeError::NoChildrenForEphemerals {
                path: "/e/child".into()
            }
        );
        assert_eq!(
            tree.create(txn(3), "/e/n-", vec![], EphemeralSequential(5))
                .unwrap_err(),
            TreeError::NoChildrenForEphemerals {
                path: "/e/n-0000000000".into()
            }
        );
        assert_eq!(content(&tree), before);
        // Deleting it takes it out of its session's index.
        tree.delete(txn(4), "/e", ANY_VERSION).unwrap();
        assert!(tree.ephemerals(5).is_empty());
        assert!(tree.ephemerals.is_empty());
    }

    #[test]
    fn set_data_bumps_the_version_and_reports_the_new_stat() {
        let mut tree = tree_ab();
        let applied = tree.set_data(txn(3), "/a", b"new".to_vec(), 0).unwrap();
        let stat = applied.result;
        assert_eq!(
            (stat.version, stat.mzxid, stat.mtime, stat.data_length),
            (1, 3, 1_030, 3)
        );
        // Creation and children are untouched.
        assert_eq!(
            (stat.czxid, stat.ctime, stat.pzxid, stat.cversion),
            (1, 1_010, 2, 1)
        );
        assert_eq!(stat.num_children, 1);
        assert_eq!(applied.changes, [Change::NodeDataChanged("/a".into())]);
        assert_eq!(tree.get_data("/a").unwrap(), (&b"new"[..], stat));
        // Any version.
        let stat = tree
            .set_data(txn(4), "/a", vec![], ANY_VERSION)
            .unwrap()
            .result;
        assert_eq!((stat.version, stat.data_length), (2, 0));
        // Setting a child's data is not a change to its parent.
        tree.set_data(txn(5), "/a/b", vec![], ANY_VERSION).unwrap();
        assert_eq!(tree.exists("/a").unwrap(), stat);
    }

    #[test]
    fn set_data_errors() {
        let mut tree = tree_ab();
        let before = content(&tree);
        assert_eq!(
            tree.set_data(txn(3), "/a", vec![], 1).unwrap_err(),
            TreeError::BadVersion {
                path: "/a".into(),
                expected: 1,
                actual: 0
            }
        );
        assert_eq!(
            tree.set_data(txn(4), "/nope", vec![], ANY_VERSION)
                .unwrap_err(),
            TreeError::NoNode {
                path: "/nope".into()
            }
        );
        assert_eq!(content(&tree), before);
    }

    #[test]
    fn versions_wrap_around_but_skip_any_version() {
        let mut tree = tree_ab();
        if let Some(node) = tree.nodes.get_mut("/a") {
            node.version = i32::MAX;
        }
        let stat = tree
            .set_data(txn(3), "/a", vec![], i32::MAX)
            .unwrap()
            .result;
        assert_eq!(stat.version, i32::MIN);
        if let Some(node) = tree.nodes.get_mut("/a") {
            node.version = -2;
        }
        let stat = tree.set_data(txn(4), "/a", vec![], -2).unwrap().result;
        assert_eq!(stat.version, 0);
    }

    #[test]
    fn delete_updates_the_parent_but_not_its_cversion() {
        let mut tree = tree_ab();
        let applied = tree.delete(txn(3), "/a/b", 0).unwrap();
        assert_eq!(
            applied.changes,
            [
                Change::NodeDeleted("/a/b".into()),
                Change::NodeChildrenChanged("/a".into()),
            ]
        );
        assert_eq!(tree.exists("/a/b"), None);
        let parent = tree.exists("/a").unwrap();
        assert_eq!(
            (parent.num_children, parent.pzxid, parent.cversion),
            (0, 3, 1)
        );
        assert!(tree.get_children("/a").unwrap().is_empty());
        tree.delete(txn(4), "/a", ANY_VERSION).unwrap();
        assert_eq!(tree.paths().collect::<Vec<_>>(), ["/"]);
        let root = tree.exists("/").unwrap();
        assert_eq!((root.num_children, root.pzxid, root.cversion), (0, 4, 1));
    }

    #[test]
    fn delete_errors() {
        let mut tree = tree_ab();
        tree.set_data(txn(3), "/a", vec![], ANY_VERSION).unwrap();
        let before = content(&tree);
        assert_eq!(
            tree.delete(txn(4), "/x", ANY_VERSION).unwrap_err(),
            TreeError::NoNode { path: "/x".into() }
        );
        assert_eq!(
            tree.delete(txn(5), "/a", ANY_VERSION).unwrap_err(),
            TreeError::NotEmpty { path: "/a".into() }
        );
        // A wrong version is reported before the children.
        assert_eq!(
            tree.delete(txn(6), "/a", 0).unwrap_err(),
            TreeError::BadVersion {
                path: "/a".into(),
                expected: 0,
                actual: 1
            }
        );
        bad_arguments(tree.delete(txn(7), "/", ANY_VERSION).unwrap_err(), "/");
        assert_eq!(content(&tree), before);
    }

    #[test]
    fn reads() {
        let tree = tree_ab();
        assert_eq!(tree.get_data("/a/b").unwrap().0, b"b");
        assert_eq!(
            tree.get_data("/a/c").unwrap_err(),
            TreeError::NoNode {
                path: "/a/c".into()
            }
        );
        assert_eq!(
            tree.get_children("/c").unwrap_err(),
            TreeError::NoNode { path: "/c".into() }
        );
        assert_eq!(tree.exists("/c"), None);
        assert_eq!(tree.paths().collect::<Vec<_>>(), ["/", "/a", "/a/b"]);
    }

    #[test]
    fn children_are_sorted() {
        let mut tree = DataTree::new();
        for (zxid, name) in [(1, "/c"), (2, "/a"), (3, "/b"), (4, "/a0")] {
            tree.create(txn(zxid), name, vec![], Persistent).unwrap();
        }
        assert_eq!(tree.get_children("/").unwrap(), ["a", "a0", "b", "c"]);
        assert_eq!(tree.exists("/").unwrap().num_children, 4);
    }

    #[test]
    fn close_session_deletes_its_ephemerals_only() {
        let mut tree = tree_ab();
        tree.create(txn(3), "/a/e1", vec![], Ephemeral(1)).unwrap();
        tree.create(txn(4), "/e2", vec![], Ephemeral(1)).unwrap();
        tree.create(txn(5), "/a/n-", vec![], EphemeralSequential(1))
            .unwrap();
        tree.create(txn(6), "/other", vec![], Ephemeral(2)).unwrap();
        let applied = tree.close_session(txn(7), 1).unwrap();
        assert_eq!(applied.result, ["/a/e1", "/a/n-0000000002", "/e2"]);
        assert_eq!(
            applied.changes,
            [
                Change::NodeDeleted("/a/e1".into()),
                Change::NodeChildrenChanged("/a".into()),
                Change::NodeDeleted("/a/n-0000000002".into()),
                Change::NodeChildrenChanged("/a".into()),
                Change::NodeDeleted("/e2".into()),
                Change::NodeChildrenChanged("/".into()),
            ]
        );
        assert_eq!(
            tree.paths().collect::<Vec<_>>(),
            ["/", "/a", "/a/b", "/other"]
        );
        assert!(tree.ephemerals(1).is_empty());
        assert_eq!(tree.ephemerals(2), ["/other"]);
        let parent = tree.exists("/a").unwrap();
        assert_eq!(
            (parent.num_children, parent.pzxid, parent.cversion),
            (1, 7, 3)
        );
        // A session with nothing left: nothing to do, but a transaction.
        let applied = tree.close_session(txn(8), 1).unwrap();
        assert!(applied.result.is_empty() && applied.changes.is_empty());
        assert_eq!(tree.last_zxid(), 8);
    }

    #[test]
    fn multi_applies_every_op_with_one_zxid() {
        let mut tree = tree_ab();
        let applied = tree
            .multi(
                txn(3),
                vec![
                    Op::Create {
                        path: "/x".into(),
                        data: b"x".to_vec(),
                        mode: Persistent,
                    },
                    // Sees the op before it.
                    Op::Create {
                        path: "/x/n-".into(),
                        data: vec![],
                        mode: EphemeralSequential(4),
                    },
                    Op::Create {
                        path: "/x/n-".into(),
                        data: vec![],
                        mode: PersistentSequential,
                    },
                    Op::SetData {
                        path: "/a".into(),
                        data: b"A".to_vec(),
                        version: 0,
                    },
                    Op::Check {
                        path: "/a".into(),
                        version: 1,
                    },
                    Op::Delete {
                        path: "/a/b".into(),
                        version: 0,
                    },
                ],
            )
            .unwrap();
        // Each result is as of its op: `/a` had its child still when its
        // data was set.
        let set = Stat {
            czxid: 1,
            mzxid: 3,
            pzxid: 2,
            ctime: 1_010,
            mtime: 1_030,
            version: 1,
            cversion: 1,
            ephemeral_owner: 0,
            data_length: 1,
            num_children: 1,
        };
        assert_eq!(
            applied.result,
            [
                OpResult::Create { path: "/x".into() },
                OpResult::Create {
                    path: "/x/n-0000000000".into()
                },
                OpResult::Create {
                    path: "/x/n-0000000001".into()
                },
                OpResult::SetData { stat: set },
                OpResult::Check,
                OpResult::Delete,
            ]
        );
        assert_eq!(
            applied.changes,
            [
                Change::NodeCreated("/x".into()),
                Change::NodeChildrenChanged("/".into()),
                Change::NodeCreated("/x/n-0000000000".into()),
                Change::NodeChildrenChanged("/x".into()),
                Change::NodeCreated("/x/n-0000000001".into()),
                Change::NodeChildrenChanged("/x".into()),
                Change::NodeDataChanged("/a".into()),
                Change::NodeDeleted("/a/b".into()),
                Change::NodeChildrenChanged("/a".into()),
            ]
        );
        for path in ["/x", "/x/n-0000000000", "/x/n-0000000001"] {
            assert_eq!(tree.exists(path).unwrap().czxid, 3, "{path}");
        }
        let stat = tree.exists("/a").unwrap();
        assert_eq!(
            (stat.mzxid, stat.pzxid, stat.version, stat.num_children),
            (3, 3, 1, 0)
        );
        assert_eq!(tree.ephemerals(4), ["/x/n-0000000000"]);
        assert_eq!(tree.last_zxid(), 3);
    }

    #[test]
    fn an_empty_multi_succeeds() {
        let mut tree = tree_ab();
        let applied = tree.multi(txn(3), vec![]).unwrap();
        assert!(applied.result.is_empty() && applied.changes.is_empty());
        assert_eq!(tree.last_zxid(), 3);
    }

    #[test]
    fn a_failing_multi_changes_nothing() {
        let mut tree = tree_ab();
        tree.create(txn(3), "/a/e", b"e".to_vec(), Ephemeral(4))
            .unwrap();
        let before = content(&tree);
        let ops = vec![
            Op::Create {
                path: "/x".into(),
                data: vec![],
                mode: Ephemeral(4),
            },
            Op::Create {
                path: "/a/n-".into(),
                data: vec![],
                mode: PersistentSequential,
            },
            Op::SetData {
                path: "/a/b".into(),
                data: b"changed".to_vec(),
                version: ANY_VERSION,
            },
            Op::Delete {
                path: "/a/e".into(),
                version: 0,
            },
            Op::SetData {
                path: "/a/b".into(),
                data: b"again".to_vec(),
                version: 1,
            },
            Op::Delete {
                path: "/a/b".into(),
                version: ANY_VERSION,
            },
            // Fails: /a still has /a/n-0000000001.
            Op::Delete {
                path: "/a".into(),
                version: ANY_VERSION,
            },
            Op::Create {
                path: "/never".into(),
                data: vec![],
                mode: Persistent,
            },
        ];
        assert_eq!(
            tree.multi(txn(4), ops).unwrap_err(),
            MultiError {
                index: 6,
                error: TreeError::NotEmpty { path: "/a".into() }
            }
        );
        assert_eq!(content(&tree), before);
        assert_eq!(tree.ephemerals(4), ["/a/e"]);
        assert_eq!(tree.last_zxid(), 4);
        // The sequence number the rolled-back create took is free again.
        let applied = tree
            .create(txn(5), "/a/n-", vec![], PersistentSequential)
            .unwrap();
        assert_eq!(applied.result, "/a/n-0000000002");
    }

    #[test]
    fn a_failing_check_fails_the_multi() {
        let mut tree = tree_ab();
        let before = content(&tree);
        let ops = |version| {
            vec![
                Op::SetData {
                    path: "/a/b".into(),
                    data: vec![],
                    version: ANY_VERSION,
                },
                Op::Check {
                    path: "/a".into(),
                    version,
                },
            ]
        };
        assert_eq!(
            tree.multi(txn(3), ops(1)).unwrap_err(),
            MultiError {
                index: 1,
                error: TreeError::BadVersion {
                    path: "/a".into(),
                    expected: 1,
                    actual: 0
                },
            }
        );
        assert_eq!(content(&tree), before);
        let err = tree
            .multi(
                txn(4),
                vec![Op::Check {
                    path: "/zz".into(),
                    version: ANY_VERSION,
                }],
            )
            .unwrap_err();
        assert_eq!(
            err,
            MultiError {
                index: 0,
                error: TreeError::NoNode { path: "/zz".into() }
            }
        );
        assert!(tree.multi(txn(5), ops(0)).is_ok());
        assert_eq!(tree.exists("/a/b").unwrap().version, 1);
    }

    #[test]
    fn stale_zxids_are_refused() {
        let mut tree = tree_ab();
        let before = tree.clone();
        let stale = TreeError::ZxidNotIncreasing {
            zxid: 2,
            last_zxid: 2,
        };
        assert_eq!(
            tree.create(txn(2), "/c", vec![], Persistent).unwrap_err(),
            stale
        );
        assert_eq!(
            tree.set_data(txn(1), "/a", vec![], ANY_VERSION)
                .unwrap_err(),
            TreeError::ZxidNotIncreasing {
                zxid: 1,
                last_zxid: 2
            }
        );
        assert_eq!(tree.delete(txn(2), "/a/b", ANY_VERSION).unwrap_err(), stale);
        assert_eq!(tree.close_session(txn(2), 1).unwrap_err(), stale);
        assert_eq!(
            tree.multi(txn(2), vec![]).unwrap_err(),
            MultiError {
                index: 0,
                error: stale
            }
        );
        // Not even last_zxid moved.
        assert_eq!(tree, before);
    }

    #[test]
    fn errors_name_the_path() {
        let errors = [
            TreeError::NoNode { path: "/p".into() },
            TreeError::NodeExists { path: "/p".into() },
            TreeError::BadVersion {
                path: "/p".into(),
                expected: 1,
                actual: 2,
            },
            TreeError::NotEmpty { path: "/p".into() },
            TreeError::NoChildrenForEphemerals { path: "/p".into() },
            TreeError::BadArguments {
                path: "/p".into(),
                reason: "why".into(),
            },
        ];
        for error in errors {
            let message = error.to_string();
            assert!(
                message.contains("/p") && !message.contains('\n'),
                "{message}"
            );
        }
        let multi = MultiError {
            index: 3,
            error: TreeError::NotEmpty { path: "/p".into() },
        };
        assert_eq!(
            multi.to_string(),
            "multi failed at operation 3: node /p has children"
        );
    }

    #[test]
    fn a_snapshot_round_trips_through_serde() {
        let mut tree = tree_ab();
        tree.create(txn(3), "/a/e", b"\x00\xff".to_vec(), EphemeralSequential(7))
            .unwrap();
        tree.set_data(txn(4), "/a/b", b"bb".to_vec(), 0).unwrap();
        let config = bincode::config::standard();
        let bytes = bincode::serde::encode_to_vec(&tree, config).unwrap();
        let (copy, read): (DataTree, usize) =
            bincode::serde::decode_from_slice(&bytes, config).unwrap();
        assert_eq!(read, bytes.len());
        assert_eq!(copy, tree);
        assert_eq!(copy.last_zxid(), 4);
        assert_eq!(copy.ephemerals(7), ["/a/e0000000001"]);
        // And the copy goes on as the original does.
        let mut original = tree;
        let mut copy = copy;
        assert_eq!(
            original.close_session(txn(5), 7),
            copy.close_session(txn(5), 7)
        );
        assert_eq!(original, copy);
    }
}
