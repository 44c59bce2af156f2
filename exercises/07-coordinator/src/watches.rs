//! Watches: one-shot notifications that a node changed, as ZooKeeper has
//! them.
//!
//! A client sets a watch with a read: `exists` and `get_data` set a *data*
//! watch on the path, `get_children` a *child* watch. The next change that
//! concerns it fires it, once, and it is gone: a client that wants to keep
//! watching reads again (and so sees the new state, and sets the next
//! watch). Watches are kept by the server the client is connected to, not
//! replicated: a client that moves to another server hands it the watches
//! it still has, with the last zxid it saw ([`SetWatches`], ZooKeeper's
//! message of that name), and the server fires at once those whose node
//! changed after that zxid ([`Watches::set_again`]).
//!
//! Which change fires which watch, as in ZooKeeper:
//!
//! | change                       | data watch on it | child watch on it |
//! | ---------------------------- | ---------------- | ----------------- |
//! | `NodeCreated`                | fires            |                   |
//! | `NodeDataChanged`            | fires            |                   |
//! | `NodeDeleted`                | fires            | fires             |
//! | `NodeChildrenChanged`        |                  | fires             |
//!
//! The server sends a watch's event to its client before it answers any
//! read that would show the change: it applies the log in order, fires the
//! watches of each entry as it applies it, and a connection delivers in
//! order. So a client never sees the new state before the event. Two
//! places jump over changes instead of applying them one by one, and both
//! compare stats to find what the jump changed: a client's watches set
//! again after a move ([`Watches::set_again`]), and a server's state
//! replaced by the leader's snapshot ([`Watches::fire_jump`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::tree::{Change, DataTree, Zxid};

/// Who set a watch: a client connected to this server.
pub type ClientId = u64;

/// The kind of a watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum WatchKind {
    /// Set by `exists` or `get_data`.
    Data,
    /// Set by `get_children`.
    Children,
}

/// The watches a client still has when it moves to another server, by
/// path, as ZooKeeper's `SetWatches` sends them. It keeps apart the
/// `exists` watches on a node that was not there: for those, the node's
/// being there now is the news.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetWatches {
    /// Data watches (`get_data`, or `exists` on a node that was there).
    pub data: Vec<String>,
    /// `exists` watches on a node that was not there.
    pub exist: Vec<String>,
    /// Child watches (`get_children`).
    pub children: Vec<String>,
}

/// The watches of one server's clients.
#[derive(Debug, Default)]
pub struct Watches {
    /// Path and kind to the clients watching. A client watches a path
    /// once per kind however many reads set it, and is told once.
    by_path: BTreeMap<(String, WatchKind), BTreeSet<ClientId>>,
}

impl Watches {
    /// No watches.
    pub fn new() -> Watches {
        Watches::default()
    }

    /// `client` watches `path` for the changes `kind` covers.
    pub fn add(&mut self, client: ClientId, path: &str, kind: WatchKind) {
        self.by_path
            .entry((path.to_string(), kind))
            .or_default()
            .insert(client);
    }

    /// The watches that `changes` fire, in the order of the changes, each
    /// removed (they are one-shot). A client gets each change at most
    /// once, even if both its watches on the path fire.
    pub fn fire(&mut self, changes: &[Change]) -> Vec<(ClientId, Change)> {
        todo!("exercise `fire`: For each change, in order: the kinds of watch it fires (NodeCreated and NodeDataChanged: data watches; NodeDeleted: data and child watches; NodeChildrenChanged: child watches) on its path. Remove those watches (they are one-shot) and tell each of their clients once, even if both its watches on the path fire.")
    }

    /// A client that moved here sets `watches` again; it has seen
    /// everything up to `seen` (the last zxid it saw). A watch whose node
    /// changed after `seen` fires at once: the client missed that change
    /// while it moved. The others are set, to fire later. Returns the
    /// changes to send the client, each path's at most once.
    pub fn set_again(
        &mut self,
        client: ClientId,
        watches: &SetWatches,
        seen: Zxid,
        tree: &DataTree,
    ) -> Vec<Change> {
        let mut fired = Vec::new();
        for path in &watches.data {
            match tree.exists(path) {
                None => fired.push(Change::NodeDeleted(path.clone())),
                Some(stat) if stat.mzxid > seen => {
                    fired.push(Change::NodeDataChanged(path.clone()))
                }
                Some(_) => self.add(client, path, WatchKind::Data),
            }
        }
        for path in &watches.exist {
            match tree.exists(path) {
                Some(_) => fired.push(Change::NodeCreated(path.clone())),
                None => self.add(client, path, WatchKind::Data),
            }
        }
        for path in &watches.children {
            match tree.exists(path) {
                None => fired.push(Change::NodeDeleted(path.clone())),
                Some(stat) if stat.pzxid > seen => {
                    fired.push(Change::NodeChildrenChanged(path.clone()))
                }
                Some(_) => self.add(client, path, WatchKind::Children),
            }
        }
        // A node deleted under both a data and a child watch is told once,
        // and a deletion ends every watch on the path.
        let mut told: Vec<Change> = Vec::new();
        fired.retain(|change| {
            let first = !told.contains(change);
            told.push(change.clone());
            first
        });
        for change in &fired {
            if let Change::NodeDeleted(path) = change {
                for kind in [WatchKind::Data, WatchKind::Children] {
                    let key = (path.clone(), kind);
                    if let Some(clients) = self.by_path.get_mut(&key) {
                        clients.remove(&client);
                        if clients.is_empty() {
                            self.by_path.remove(&key);
                        }
                    }
                }
            }
        }
        fired
    }

    /// The server's tree jumped from `old` to `new` (it installed the
    /// leader's snapshot) without applying the changes in between one by
    /// one: fires every watch whose node the jump changed, as
    /// [`Watches::fire`] would have, by comparing the two trees' stats.
    pub fn fire_jump(&mut self, old: &DataTree, new: &DataTree) -> Vec<(ClientId, Change)> {
        let mut changes = Vec::new();
        for (path, kind) in self.by_path.keys() {
            let change = match (kind, old.exists(path), new.exists(path)) {
                (_, Some(_), None) => Change::NodeDeleted(path.clone()),
                (WatchKind::Data, None, Some(_)) => Change::NodeCreated(path.clone()),
                (WatchKind::Data, Some(before), Some(after))
                    if (before.czxid, before.mzxid) != (after.czxid, after.mzxid) =>
                {
                    Change::NodeDataChanged(path.clone())
                }
                (WatchKind::Children, Some(before), Some(after))
                    if (before.czxid, before.pzxid) != (after.czxid, after.pzxid) =>
                {
                    Change::NodeChildrenChanged(path.clone())
                }
                _ => continue,
            };
            if !changes.contains(&change) {
                changes.push(change);
            }
        }
        self.fire(&changes)
    }

    /// Forgets every watch of `client` (it disconnected).
    pub fn remove_client(&mut self, client: ClientId) {
        self.by_path.retain(|_, clients| {
            clients.remove(&client);
            !clients.is_empty()
        });
    }

    /// How many (path, kind, client) watches are set.
    pub fn len(&self) -> usize {
        self.by_path.values().map(BTreeSet::len).sum()
    }

    /// Whether no watch is set.
    pub fn is_empty(&self) -> bool {
        self.by_path.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_fires_once() {
        let mut watches = Watches::new();
        watches.add(1, "/a", WatchKind::Data);
        let change = Change::NodeDataChanged("/a".into());
        assert_eq!(
            watches.fire(std::slice::from_ref(&change)),
            vec![(1, change.clone())]
        );
        assert!(watches.fire(&[change]).is_empty());
        assert!(watches.is_empty());
    }

    #[test]
    fn each_change_fires_the_kinds_zookeeper_says() {
        let cases = [
            (Change::NodeCreated("/a".into()), [true, false]),
            (Change::NodeDataChanged("/a".into()), [true, false]),
            (Change::NodeDeleted("/a".into()), [true, true]),
            (Change::NodeChildrenChanged("/a".into()), [false, true]),
        ];
        for (change, [data, children]) in cases {
            let mut watches = Watches::new();
            watches.add(1, "/a", WatchKind::Data);
            watches.add(2, "/a", WatchKind::Children);
            let fired: Vec<ClientId> = watches
                .fire(std::slice::from_ref(&change))
                .into_iter()
                .map(|(client, _)| client)
                .collect();
            let mut expected = Vec::new();
            if data {
                expected.push(1);
            }
            if children {
                expected.push(2);
            }
            assert_eq!(fired, expected, "{change:?}");
        }
    }

    #[test]
    fn a_client_with_both_watches_hears_of_a_deletion_once() {
        let mut watches = Watches::new();
        watches.add(1, "/a", WatchKind::Data);
        watches.add(1, "/a", WatchKind::Children);
        watches.add(1, "/a", WatchKind::Data);
        assert_eq!(watches.len(), 2);
        let fired = watches.fire(&[Change::NodeDeleted("/a".into())]);
        assert_eq!(fired.len(), 1);
        assert!(watches.is_empty());
    }

    #[test]
    fn only_the_watched_path_fires_and_in_the_order_of_the_changes() {
        let mut watches = Watches::new();
        watches.add(1, "/a", WatchKind::Data);
        watches.add(2, "/", WatchKind::Children);
        let changes = [
            Change::NodeCreated("/b".into()),
            Change::NodeChildrenChanged("/".into()),
            Change::NodeDeleted("/a".into()),
        ];
        let fired = watches.fire(&changes);
        assert_eq!(
            fired,
            vec![
                (2, Change::NodeChildrenChanged("/".into())),
                (1, Change::NodeDeleted("/a".into()))
            ]
        );
    }

    #[test]
    fn a_disconnected_client_loses_its_watches() {
        let mut watches = Watches::new();
        watches.add(1, "/a", WatchKind::Data);
        watches.add(2, "/a", WatchKind::Data);
        watches.remove_client(1);
        let fired = watches.fire(&[Change::NodeDataChanged("/a".into())]);
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].0, 2);
    }

    use crate::tree::{ANY_VERSION, CreateMode, Txn};

    /// A tree with `/a` (created at zxid 1) and `/a/x` (at 2).
    fn tree() -> DataTree {
        let mut tree = DataTree::new();
        tree.create(Txn::new(1, 0), "/a", Vec::new(), CreateMode::Persistent)
            .unwrap();
        tree.create(Txn::new(2, 0), "/a/x", Vec::new(), CreateMode::Persistent)
            .unwrap();
        tree
    }

    #[test]
    fn watches_set_again_fire_at_once_for_what_changed_after_the_clients_zxid() {
        let mut changed = tree();
        changed
            .set_data(Txn::new(3, 0), "/a/x", b"v".to_vec(), ANY_VERSION)
            .unwrap();
        changed
            .create(Txn::new(4, 0), "/b", Vec::new(), CreateMode::Persistent)
            .unwrap();
        changed.delete(Txn::new(5, 0), "/a/x", ANY_VERSION).unwrap();
        let set = SetWatches {
            data: vec!["/a".into(), "/a/x".into()],
            exist: vec!["/b".into(), "/c".into()],
            children: vec!["/a".into(), "/a/x".into()],
        };
        // Seen up to 2: everything after it is news.
        let mut watches = Watches::new();
        let fired = watches.set_again(1, &set, 2, &changed);
        assert_eq!(
            fired,
            vec![
                Change::NodeDeleted("/a/x".into()),
                Change::NodeCreated("/b".into()),
                Change::NodeChildrenChanged("/a".into()),
            ]
        );
        // What did not fire is set: `/a`'s data, `/c`'s creation.
        assert_eq!(watches.len(), 2);
        let later = [
            Change::NodeDataChanged("/a".into()),
            Change::NodeCreated("/c".into()),
        ];
        assert_eq!(watches.fire(&later).len(), 2);
        assert!(watches.is_empty());
        // Seen up to 5: nothing is news, all is set.
        let mut watches = Watches::new();
        let set = SetWatches {
            data: vec!["/a".into()],
            exist: vec!["/c".into()],
            children: vec!["/a".into()],
        };
        assert!(watches.set_again(1, &set, 5, &changed).is_empty());
        assert_eq!(watches.len(), 3);
    }

    #[test]
    fn a_jump_to_a_snapshot_fires_the_watches_on_what_it_changed() {
        let old = tree();
        let mut new = tree();
        new.set_data(Txn::new(3, 0), "/a", b"v".to_vec(), ANY_VERSION)
            .unwrap();
        new.create(Txn::new(4, 0), "/b", Vec::new(), CreateMode::Persistent)
            .unwrap();
        let mut watches = Watches::new();
        watches.add(1, "/a", WatchKind::Data);
        watches.add(1, "/a", WatchKind::Children);
        watches.add(2, "/b", WatchKind::Data);
        watches.add(3, "/a/x", WatchKind::Data);
        let mut fired = watches.fire_jump(&old, &new);
        fired.sort_by_key(|(client, _)| *client);
        assert_eq!(
            fired,
            vec![
                (1, Change::NodeDataChanged("/a".into())),
                (2, Change::NodeCreated("/b".into())),
            ]
        );
        // The child watch on `/a` and the watch on `/a/x` are untouched.
        assert_eq!(watches.len(), 2);
    }
}
