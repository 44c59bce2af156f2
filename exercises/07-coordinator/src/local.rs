//! A coordinator ensemble in one thread: three [`Server`]s, a perfect
//! network and instant disks. Every output is carried out at once, until
//! nothing is left. For examples, benchmarks and tests that want the
//! servers' behaviour without sockets or the simulator's faults.

use ch06_replication::sim::{Millis, NodeId};

use crate::node::{ClientMessage, Send, Server, ServerMessage};
use crate::raft::DiskWrite;
use crate::raft::{HardState, RaftConfig, Role};
use crate::tree::SessionId;
use crate::watches::ClientId;

/// Three servers, a perfect network and instant disks: every output is
/// carried out at once, until nothing is left.
#[derive(Debug)]
pub struct LocalCluster {
    /// The servers, ids 1 to 3.
    pub servers: Vec<Server>,
    /// The clock, in ms; it moves only in [`LocalCluster::pass`].
    pub now: Millis,
    /// What each (server, client) pair received.
    pub inbox: Vec<(NodeId, ClientId, ServerMessage)>,
}

impl Default for LocalCluster {
    fn default() -> Self {
        LocalCluster::new()
    }
}

impl LocalCluster {
    /// Three servers, server 1 elected: its election timeout is half the
    /// others', so it runs out first.
    pub fn new() -> LocalCluster {
        let servers = (1..=3)
            .map(|id| {
                let config = RaftConfig {
                    election_timeout_ms: if id == 1 { 50 } else { 100 },
                    heartbeat_interval_ms: 10,
                    max_entries_per_message: 64,
                };
                let hard = HardState::default();
                Server::new(id, &[1, 2, 3], config, hard, None, Vec::new(), 0, id.into())
            })
            .collect();
        let mut cluster = LocalCluster {
            servers,
            now: 0,
            inbox: Vec::new(),
        };
        while cluster.servers[0].role() != Role::Leader {
            assert!(cluster.now < 1_000, "server 1 was not elected");
            cluster.pass(10);
        }
        cluster
    }

    /// Server `id`.
    pub fn server(&mut self, id: NodeId) -> &mut Server {
        &mut self.servers[id as usize - 1]
    }

    /// Carries out every output, and the outputs those cause, until
    /// there are none: messages are delivered, writes synced at once.
    pub fn settle(&mut self) {
        loop {
            let mut sends = Vec::new();
            for server in &mut self.servers {
                let output = server.take_output();
                let last = output
                    .writes
                    .iter()
                    .filter_map(|w| match w {
                        DiskWrite::Append(e) => Some(e.index),
                        _ => None,
                    })
                    .max();
                if let Some(last) = last {
                    server.persisted(last);
                }
                let more = server.take_output();
                for send in output
                    .now
                    .into_iter()
                    .chain(output.after_sync)
                    .chain(more.now)
                    .chain(more.after_sync)
                {
                    sends.push((server.id(), send));
                }
            }
            if sends.is_empty() {
                return;
            }
            for (from, send) in sends {
                match send {
                    Send::Client(client, msg) => self.inbox.push((from, client, msg)),
                    Send::Peer(to, msg) => {
                        let now = self.now;
                        self.server(to).on_peer(from, msg, now);
                    }
                }
            }
        }
    }

    /// Advances time by `ms`, ticking every server (server 1 last, so
    /// that it stays the leader: its heartbeats are what keep the
    /// others from timing out).
    pub fn pass(&mut self, ms: Millis) {
        let end = self.now + ms;
        while self.now < end {
            self.now += 10;
            let now = self.now;
            for id in [1, 2, 3] {
                self.server(id).on_tick(now);
            }
            self.settle();
        }
    }

    /// Sends a client's message, and lets a couple of heartbeats pass
    /// (followers learn of a commit from the leader's next message).
    pub fn send(&mut self, server: NodeId, client: ClientId, msg: ClientMessage) {
        let now = self.now;
        self.server(server).on_client(client, msg, now);
        self.settle();
        self.pass(20);
    }

    /// The messages client `client` got from `server`, taken.
    pub fn received(&mut self, server: NodeId, client: ClientId) -> Vec<ServerMessage> {
        let (mine, rest) = std::mem::take(&mut self.inbox)
            .into_iter()
            .partition(|(s, c, _)| *s == server && *c == client);
        self.inbox = rest;
        mine.into_iter().map(|(_, _, m)| m).collect()
    }

    /// Opens a session for `client` on `server`; panics if it is not
    /// opened (a test's expectation).
    pub fn connect(&mut self, server: NodeId, client: ClientId) -> SessionId {
        let connect = ClientMessage::Connect {
            session: None,
            timeout_ms: 500,
            last_zxid: 0,
            watches: Default::default(),
        };
        self.send(server, client, connect);
        match self.received(server, client).as_slice() {
            [ServerMessage::Connected { session, .. }] => *session,
            other => panic!("expected Connected, got {other:?}"),
        }
    }
    /// Carries out a client session's sends, lets time pass, and hands
    /// it what its server sent back.
    pub fn drive(&mut self, id: ClientId, client: &mut crate::client::ClientSession) {
        for (server, msg) in client.take_sends() {
            let now = self.now;
            self.server(server).on_client(id, msg, now);
            self.settle();
        }
        self.pass(20);
        let mine: Vec<_>;
        (mine, self.inbox) = std::mem::take(&mut self.inbox)
            .into_iter()
            .partition(|(_, c, _)| *c == id);
        for (server, _, msg) in mine {
            client.on_message(server, msg, self.now);
        }
        client.on_tick(self.now);
    }
}
