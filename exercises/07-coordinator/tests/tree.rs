//! The data tree against a model: random sequences of writes, over a few
//! paths and two sessions, applied both to a [`DataTree`] and to a model
//! written as plainly as possible (a flat map from path to node, children
//! found by scanning it, `multi` done on a copy that is kept or thrown
//! away). After every write, the two must agree on the result, the error,
//! the changes and every node with its stat, and the tree must keep its
//! invariants:
//!
//! - every node but the root has a parent, which lists it as a child;
//! - `num_children` is the number of children, and each child exists;
//! - no ephemeral node has children, and each is in its session's index;
//! - a failed write, `multi` included, leaves every node as it was.

use std::collections::BTreeMap;

use ch07_coordinator::tree::{
    ANY_VERSION, Applied, Change, CreateMode, DataTree, MultiError, Op, OpResult, SessionId, Stat,
    TreeError, Txn, Version,
};
use proptest::prelude::*;

/// The paths the writes pick from, the root included.
const PATHS: [&str; 7] = ["/", "/a", "/b", "/a/a", "/a/b", "/b/a", "/a/a/a"];
const SESSIONS: [SessionId; 2] = [1, 2];

/// Every node, with its data and stat, by path: what the tree holds, as its
/// public API shows it.
type Dump = BTreeMap<String, (Vec<u8>, Stat)>;

fn dump(tree: &DataTree) -> Dump {
    tree.paths()
        .map(|path| {
            let (data, stat) = tree.get_data(path).expect("a listed path has data");
            (path.to_string(), (data.to_vec(), stat))
        })
        .collect()
}

/// The model's node: a stat without the counts, which are computed.
#[derive(Debug, Clone, PartialEq)]
struct Node {
    data: Vec<u8>,
    czxid: u64,
    mzxid: u64,
    pzxid: u64,
    ctime: u64,
    mtime: u64,
    version: Version,
    cversion: Version,
    owner: SessionId,
}

#[derive(Debug, Clone)]
struct Model {
    nodes: BTreeMap<String, Node>,
}

fn parent_of(path: &str) -> String {
    match path.rfind('/') {
        Some(0) | None => "/".to_string(),
        Some(i) => path[..i].to_string(),
    }
}

fn owner_of(mode: CreateMode) -> SessionId {
    match mode {
        CreateMode::Ephemeral(s) | CreateMode::EphemeralSequential(s) => s,
        CreateMode::Persistent | CreateMode::PersistentSequential => 0,
    }
}

fn is_sequential(mode: CreateMode) -> bool {
    matches!(
        mode,
        CreateMode::PersistentSequential | CreateMode::EphemeralSequential(_)
    )
}

type Outcome<T> = Result<(T, Vec<Change>), TreeError>;

impl Model {
    fn new() -> Model {
        let root = Node {
            data: vec![],
            czxid: 0,
            mzxid: 0,
            pzxid: 0,
            ctime: 0,
            mtime: 0,
            version: 0,
            cversion: 0,
            owner: 0,
        };
        Model {
            nodes: BTreeMap::from([("/".to_string(), root)]),
        }
    }

    fn children(&self, path: &str) -> usize {
        self.nodes
            .keys()
            .filter(|p| p.as_str() != "/" && parent_of(p) == path)
            .count()
    }

    fn dump(&self) -> Dump {
        self.nodes
            .iter()
            .map(|(path, n)| {
                let stat = Stat {
                    czxid: n.czxid,
                    mzxid: n.mzxid,
                    pzxid: n.pzxid,
                    ctime: n.ctime,
                    mtime: n.mtime,
                    version: n.version,
                    cversion: n.cversion,
                    ephemeral_owner: n.owner,
                    data_length: n.data.len() as u32,
                    num_children: self.children(path) as u32,
                };
                (path.clone(), (n.data.clone(), stat))
            })
            .collect()
    }

    fn ephemerals(&self, session: SessionId) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.owner == session)
            .map(|(p, _)| p.clone())
            .collect()
    }

    fn version_of(&self, path: &str, expected: Version) -> Result<(), TreeError> {
        let Some(node) = self.nodes.get(path) else {
            return Err(TreeError::NoNode { path: path.into() });
        };
        if expected != ANY_VERSION && expected != node.version {
            return Err(TreeError::BadVersion {
                path: path.into(),
                expected,
                actual: node.version,
            });
        }
        Ok(())
    }

    fn create(&mut self, txn: Txn, path: &str, data: &[u8], mode: CreateMode) -> Outcome<String> {
        let sequential = is_sequential(mode);
        if path == "/" && !sequential {
            return Err(TreeError::NodeExists { path: "/".into() });
        }
        // A sequential prefix's parent is that of the name with its counter.
        let parent = parent_of(&format!("{path}{}", if sequential { "0" } else { "" }));
        let Some(p) = self.nodes.get(&parent) else {
            return Err(TreeError::NoNode { path: parent });
        };
        let full = if sequential {
            format!("{path}{:010}", p.cversion)
        } else {
            path.to_string()
        };
        if self.nodes.contains_key(&full) {
            return Err(TreeError::NodeExists { path: full });
        }
        if p.owner != 0 {
            return Err(TreeError::NoChildrenForEphemerals { path: full });
        }
        let p = self.nodes.get_mut(&parent).expect("checked above");
        p.cversion += 1;
        p.pzxid = txn.zxid;
        let node = Node {
            data: data.to_vec(),
            czxid: txn.zxid,
            mzxid: txn.zxid,
            pzxid: txn.zxid,
            ctime: txn.time,
            mtime: txn.time,
            version: 0,
            cversion: 0,
            owner: owner_of(mode),
        };
        self.nodes.insert(full.clone(), node);
        let changes = vec![
            Change::NodeCreated(full.clone()),
            Change::NodeChildrenChanged(parent),
        ];
        Ok((full, changes))
    }

    fn remove(&mut self, txn: Txn, path: &str) -> Vec<Change> {
        self.nodes.remove(path);
        let parent = parent_of(path);
        self.nodes.get_mut(&parent).expect("a parent").pzxid = txn.zxid;
        vec![
            Change::NodeDeleted(path.to_string()),
            Change::NodeChildrenChanged(parent),
        ]
    }

    fn delete(&mut self, txn: Txn, path: &str, version: Version) -> Outcome<()> {
        if path == "/" {
            return Err(TreeError::BadArguments {
                path: "/".into(),
                reason: String::new(),
            });
        }
        self.version_of(path, version)?;
        if self.children(path) > 0 {
            return Err(TreeError::NotEmpty { path: path.into() });
        }
        Ok(((), self.remove(txn, path)))
    }

    fn set_data(&mut self, txn: Txn, path: &str, data: &[u8], version: Version) -> Outcome<Stat> {
        self.version_of(path, version)?;
        let node = self.nodes.get_mut(path).expect("checked above");
        node.data = data.to_vec();
        node.version += 1;
        node.mzxid = txn.zxid;
        node.mtime = txn.time;
        let stat = self.dump()[path].1;
        Ok((stat, vec![Change::NodeDataChanged(path.to_string())]))
    }

    fn multi(&mut self, txn: Txn, ops: &[Op]) -> Result<(Vec<OpResult>, Vec<Change>), MultiError> {
        let mut copy = self.clone();
        let mut results = Vec::new();
        let mut changes = Vec::new();
        for (index, op) in ops.iter().enumerate() {
            let done = match op {
                Op::Create { path, data, mode } => copy
                    .create(txn, path, data, *mode)
                    .map(|(path, c)| (OpResult::Create { path }, c)),
                Op::Delete { path, version } => copy
                    .delete(txn, path, *version)
                    .map(|((), c)| (OpResult::Delete, c)),
                Op::SetData {
                    path,
                    data,
                    version,
                } => copy
                    .set_data(txn, path, data, *version)
                    .map(|(stat, c)| (OpResult::SetData { stat }, c)),
                Op::Check { path, version } => copy
                    .version_of(path, *version)
                    .map(|()| (OpResult::Check, vec![])),
            };
            match done {
                Ok((result, c)) => {
                    results.push(result);
                    changes.extend(c);
                }
                Err(error) => return Err(MultiError { index, error }),
            }
        }
        *self = copy;
        Ok((results, changes))
    }

    fn close_session(&mut self, txn: Txn, session: SessionId) -> Outcome<Vec<String>> {
        let paths = self.ephemerals(session);
        let mut changes = Vec::new();
        for path in &paths {
            changes.extend(self.remove(txn, path));
        }
        Ok((paths, changes))
    }
}

/// Which node a write is about: one of [`PATHS`], or one of the nodes that
/// exist (so that sequential nodes get written too).
#[derive(Debug, Clone)]
enum Target {
    Fixed(usize),
    Existing(usize),
}

#[derive(Debug, Clone)]
enum VersionChoice {
    Any,
    /// The node's version, so that conditional writes often succeed.
    Current,
    Exactly(Version),
}

#[derive(Debug, Clone)]
enum Write {
    Create(Target, Vec<u8>, CreateMode),
    Delete(Target, VersionChoice),
    SetData(Target, Vec<u8>, VersionChoice),
    Check(Target, VersionChoice),
}

#[derive(Debug, Clone)]
enum Step {
    Single(Write),
    Multi(Vec<Write>),
    Close(SessionId),
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        (0..PATHS.len()).prop_map(Target::Fixed),
        any::<usize>().prop_map(Target::Existing),
    ]
}

fn version() -> impl Strategy<Value = VersionChoice> {
    prop_oneof![
        Just(VersionChoice::Any),
        Just(VersionChoice::Current),
        (0..3).prop_map(VersionChoice::Exactly),
    ]
}

fn mode() -> impl Strategy<Value = CreateMode> {
    prop_oneof![
        Just(CreateMode::Persistent),
        Just(CreateMode::PersistentSequential),
        prop::sample::select(SESSIONS.to_vec()).prop_map(CreateMode::Ephemeral),
        prop::sample::select(SESSIONS.to_vec()).prop_map(CreateMode::EphemeralSequential),
    ]
}

fn data() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..3)
}

/// A write that can also be done alone (`check` exists only in a `multi`).
fn single_write() -> impl Strategy<Value = Write> {
    prop_oneof![
        3 => (target(), data(), mode()).prop_map(|(t, d, m)| Write::Create(t, d, m)),
        2 => (target(), version()).prop_map(|(t, v)| Write::Delete(t, v)),
        2 => (target(), data(), version()).prop_map(|(t, d, v)| Write::SetData(t, d, v)),
    ]
}

fn multi_write() -> impl Strategy<Value = Write> {
    prop_oneof![
        4 => single_write(),
        1 => (target(), version()).prop_map(|(t, v)| Write::Check(t, v)),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => single_write().prop_map(Step::Single),
        2 => prop::collection::vec(multi_write(), 0..5).prop_map(Step::Multi),
        1 => prop::sample::select(SESSIONS.to_vec()).prop_map(Step::Close),
    ]
}

/// Turns a generated write into an operation, choosing its path and version
/// from the model as it is now.
fn resolve(model: &Model, write: &Write) -> Op {
    let path = |target: &Target| match target {
        Target::Fixed(i) => PATHS[*i].to_string(),
        Target::Existing(i) => {
            let paths: Vec<&String> = model.nodes.keys().collect();
            paths[i % paths.len()].clone()
        }
    };
    let version = |path: &str, choice: &VersionChoice| match choice {
        VersionChoice::Any => ANY_VERSION,
        VersionChoice::Current => model.nodes.get(path).map_or(0, |n| n.version),
        VersionChoice::Exactly(v) => *v,
    };
    match write {
        Write::Create(t, data, mode) => Op::Create {
            path: path(t),
            data: data.clone(),
            mode: *mode,
        },
        Write::Delete(t, v) => {
            let path = path(t);
            let version = version(&path, v);
            Op::Delete { path, version }
        }
        Write::SetData(t, data, v) => {
            let path = path(t);
            let version = version(&path, v);
            Op::SetData {
                path,
                data: data.clone(),
                version,
            }
        }
        Write::Check(t, v) => {
            let path = path(t);
            let version = version(&path, v);
            Op::Check { path, version }
        }
    }
}

/// The reason of a `BadArguments` is prose; the test compares the rest.
fn normalized(error: TreeError) -> TreeError {
    match error {
        TreeError::BadArguments { path, .. } => TreeError::BadArguments {
            path,
            reason: String::new(),
        },
        other => other,
    }
}

fn outcome<T>(result: Result<Applied<T>, TreeError>) -> Outcome<T> {
    result
        .map(|applied| (applied.result, applied.changes))
        .map_err(normalized)
}

fn check_invariants(tree: &DataTree) -> Result<(), TestCaseError> {
    let paths: Vec<&str> = tree.paths().collect();
    prop_assert_eq!(paths.first(), Some(&"/"));
    let mut owned: BTreeMap<SessionId, Vec<String>> = BTreeMap::new();
    let mut children_total = 0;
    for &path in &paths {
        let stat = tree.exists(path).expect("a listed path exists");
        let children = tree.get_children(path).expect("a listed path has children");
        prop_assert_eq!(stat.num_children as usize, children.len(), "{}", path);
        children_total += children.len();
        for child in &children {
            let child_path = if path == "/" {
                format!("/{child}")
            } else {
                format!("{path}/{child}")
            };
            prop_assert!(tree.exists(&child_path).is_some(), "{}", child_path);
        }
        if stat.ephemeral_owner != 0 {
            prop_assert!(children.is_empty(), "ephemeral {} has children", path);
            owned
                .entry(stat.ephemeral_owner)
                .or_default()
                .push(path.to_string());
        }
        if path != "/" {
            let parent = parent_of(path);
            let name = &path[path.rfind('/').expect("a slash") + 1..];
            let siblings = tree.get_children(&parent);
            prop_assert!(
                siblings.is_ok_and(|s| s.iter().any(|c| c == name)),
                "{} is not a child of its parent",
                path
            );
        }
    }
    // Every node but the root is exactly one node's child.
    prop_assert_eq!(children_total, paths.len() - 1);
    for session in SESSIONS {
        prop_assert_eq!(
            tree.ephemerals(session),
            owned.remove(&session).unwrap_or_default()
        );
    }
    prop_assert!(
        owned.is_empty(),
        "ephemerals of unknown sessions: {:?}",
        owned
    );
    Ok(())
}

fn run(steps: &[Step]) -> Result<(), TestCaseError> {
    let mut tree = DataTree::new();
    let mut model = Model::new();
    for (i, step) in steps.iter().enumerate() {
        let txn = Txn::new(i as u64 + 1, 1_000 + 7 * i as u64);
        let before = dump(&tree);
        let failed = match step {
            Step::Single(write) => match resolve(&model, write) {
                Op::Create { path, data, mode } => {
                    let expected = model.create(txn, &path, &data, mode);
                    let actual = outcome(tree.create(txn, &path, data, mode));
                    prop_assert_eq!(&actual, &expected, "create {}", path);
                    actual.is_err()
                }
                Op::Delete { path, version } => {
                    let expected = model.delete(txn, &path, version);
                    let actual = outcome(tree.delete(txn, &path, version));
                    prop_assert_eq!(&actual, &expected, "delete {}", path);
                    actual.is_err()
                }
                Op::SetData {
                    path,
                    data,
                    version,
                } => {
                    let expected = model.set_data(txn, &path, &data, version);
                    let actual = outcome(tree.set_data(txn, &path, data, version));
                    prop_assert_eq!(&actual, &expected, "set_data {}", path);
                    actual.is_err()
                }
                Op::Check { .. } => unreachable!("single_write makes no check"),
            },
            Step::Multi(writes) => {
                let ops: Vec<Op> = writes.iter().map(|w| resolve(&model, w)).collect();
                let expected = model.multi(txn, &ops);
                let actual = tree
                    .multi(txn, ops.clone())
                    .map(|applied| (applied.result, applied.changes))
                    .map_err(|e| MultiError {
                        index: e.index,
                        error: normalized(e.error),
                    });
                prop_assert_eq!(&actual, &expected, "multi {:?}", ops);
                actual.is_err()
            }
            Step::Close(session) => {
                let expected = model.close_session(txn, *session);
                let actual = outcome(tree.close_session(txn, *session));
                prop_assert_eq!(&actual, &expected, "close_session {}", session);
                false
            }
        };
        if failed {
            prop_assert_eq!(&dump(&tree), &before, "a failed write changed the tree");
        }
        prop_assert_eq!(dump(&tree), model.dump());
        prop_assert_eq!(tree.last_zxid(), txn.zxid);
        check_invariants(&tree)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_tree_agrees_with_the_model(steps in prop::collection::vec(step(), 1..60)) {
        run(&steps)?;
    }
}

/// The checks above can fail: they see a tree that breaks no invariant but
/// differs from the model by one node's owner.
#[test]
fn the_checks_notice_a_difference() {
    let mut tree = DataTree::new();
    let txn = |zxid| Txn::new(zxid, zxid);
    tree.create(txn(1), "/a", vec![], CreateMode::Persistent)
        .unwrap();
    tree.create(txn(2), "/a/b", vec![], CreateMode::Ephemeral(1))
        .unwrap();
    assert!(check_invariants(&tree).is_ok());
    let mut model = Model::new();
    model
        .create(txn(1), "/a", &[], CreateMode::Persistent)
        .unwrap();
    model
        .create(txn(2), "/a/b", &[], CreateMode::Persistent)
        .unwrap();
    assert_ne!(dump(&tree), model.dump());
    assert_ne!(tree.ephemerals(1), model.ephemerals(1));
}
