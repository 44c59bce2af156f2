//! Watches: one-shot notifications that a node changed, as ZooKeeper has
//! them.
//!
//! A client sets a watch with a read: `exists` and `get_data` set a *data*
//! watch on the path, `get_children` a *child* watch. The next change that
//! concerns it fires it, once, and it is gone: a client that wants to keep
//! watching reads again (and so sees the new state, and sets the next
//! watch). Watches are kept by the server the client is connected to, not
//! replicated: a client that moves to another server sets them again there
//! (ZooKeeper's client library does that for you, and so does this
//! chapter's).
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
//! order. So a client never sees the new state before the event.

use std::collections::{BTreeMap, BTreeSet};

use crate::tree::Change;

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
}
