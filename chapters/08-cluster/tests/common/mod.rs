//! A real cluster in one process: three coordinator servers (chapter 7's
//! shell) and brokers ([`ClusterBroker`]s), each on free loopback ports,
//! each broker in a runtime of its own so that a test can crash it: the
//! runtime is dropped with every task in it, its sockets close, and its
//! coordinator session is left to expire, as after `kill -9`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ch03_partitions::TopicStore;
use ch04_network::ServerConfig;
use ch06_replication::client::{ClusterClient, ClusterConfig};
use ch06_replication::protocol::BrokerId;
use ch06_replication::service::ReplicationConfig;
use ch07_coordinator::client::ClientConfig;
use ch07_coordinator::raft::RaftConfig;
use ch07_coordinator::shell::{self, Member, ShellConfig};
use ch08_cluster::controller::ClusterConfig as NodeConfig;
use ch08_cluster::protocol::ClusterDescription;
use ch08_cluster::service::{self, ClusterBrokerConfig, ClusterView, describe_cluster};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

/// The coordinator session timeout the brokers use: a crashed broker is
/// fenced this long after it stops.
pub(crate) const SESSION_TIMEOUT_MS: u64 = 1_000;

/// One broker: its runtime (dropped to crash it), its address, its view.
pub(crate) struct Broker {
    pub(crate) addr: String,
    pub(crate) view: ClusterView,
    pub(crate) dir: PathBuf,
    runtime: Option<Runtime>,
    stop: Option<oneshot::Sender<()>>,
    stopped: Option<oneshot::Receiver<()>>,
}

/// Three coordinator servers and brokers 1..=n.
pub(crate) struct Cluster {
    pub(crate) coordinator: Vec<SocketAddr>,
    coordinator_stops: Vec<oneshot::Sender<()>>,
    pub(crate) brokers: BTreeMap<BrokerId, Broker>,
    dir: tempfile::TempDir,
}

/// Short timings, so that a failure is noticed within a second or two.
fn config(id: BrokerId, coordinator: &[SocketAddr]) -> ClusterBrokerConfig {
    let mut replication = ReplicationConfig::new(id, "");
    replication.heartbeat_interval = Duration::from_millis(100);
    replication.replica_fetch_wait_max = Duration::from_millis(100);
    replication.replica_fetch_backoff = Duration::from_millis(50);
    replication.tick_interval = Duration::from_millis(50);
    replication.request_timeout = Duration::from_secs(2);
    replication.manager.request_timeout_ms = 2_000;
    replication.manager.replica.replica_lag_time_max_ms = 1_000;
    replication.manager.high_watermark_checkpoint_interval_ms = 100;
    ClusterBrokerConfig {
        replication,
        cluster: NodeConfig {
            client: ClientConfig {
                session_timeout_ms: SESSION_TIMEOUT_MS,
                request_timeout_ms: 300,
                ping_interval_ms: 200,
            },
            ..NodeConfig::default()
        },
        coordinator: coordinator.to_vec(),
        advertised: None,
    }
}

impl Cluster {
    /// Three coordinator servers and `n` brokers, every broker running.
    pub(crate) async fn start(n: u32) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let mut listeners = Vec::new();
        let mut members = BTreeMap::new();
        for id in 1..=3u32 {
            let clients = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let peers = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let member = Member {
                client: clients.local_addr().unwrap(),
                peer: peers.local_addr().unwrap(),
            };
            members.insert(id, member);
            listeners.push((id, clients, peers));
        }
        let mut coordinator_stops = Vec::new();
        for (id, clients, peers) in listeners {
            let config = ShellConfig {
                id,
                ensemble: members.clone(),
                data_dir: dir.path().join(format!("coordinator-{id}")),
                raft: RaftConfig {
                    election_timeout_ms: 300,
                    heartbeat_interval_ms: 50,
                    max_entries_per_message: 256,
                },
                tick: Duration::from_millis(10),
                snapshot_every: 10_000,
            };
            let (stop, stopped) = oneshot::channel::<()>();
            tokio::spawn(async move {
                let shutdown = async {
                    // A dropped sender stops it too.
                    let _ = stopped.await;
                };
                shell::run(config, clients, peers, shutdown).await.unwrap();
            });
            coordinator_stops.push(stop);
        }
        let mut cluster = Cluster {
            coordinator: members.values().map(|m| m.client).collect(),
            coordinator_stops,
            brokers: BTreeMap::new(),
            dir,
        };
        for id in 1..=n {
            let dir = cluster.dir.path().join(format!("broker-{id}"));
            let broker = cluster.serve(id, dir).await;
            cluster.brokers.insert(id, broker);
        }
        cluster
    }

    /// Starts broker `id` on `dir`, in a runtime of its own.
    async fn serve(&self, id: BrokerId, dir: PathBuf) -> Broker {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let config = config(id, &self.coordinator);
        let (stop, stop_rx) = oneshot::channel::<()>();
        let (stopped_tx, stopped) = oneshot::channel::<()>();
        let (ready, bound) = oneshot::channel();
        let store_dir = dir.clone();
        runtime.spawn(async move {
            let (store, _) = TopicStore::open(&store_dir).unwrap();
            let addr = "127.0.0.1:0".parse().unwrap();
            let (server, view) = service::bind(addr, store, ServerConfig::default(), config)
                .await
                .unwrap();
            ready.send((server.local_addr().to_string(), view)).ok();
            server
                .run(async {
                    let _ = stop_rx.await;
                })
                .await
                .unwrap();
            let _ = stopped_tx.send(());
        });
        let (addr, view) = bound.await.unwrap();
        Broker {
            addr,
            view,
            dir,
            runtime: Some(runtime),
            stop: Some(stop),
            stopped: Some(stopped),
        }
    }

    /// Crashes broker `id`: every task of it ends at once, nothing is
    /// closed cleanly, and its session is left to expire.
    pub(crate) fn crash(&mut self, id: BrokerId) {
        let broker = self.brokers.get_mut(&id).unwrap();
        broker.runtime.take().unwrap().shutdown_background();
    }

    /// Stops broker `id` cleanly (its session closed at once).
    pub(crate) async fn stop(&mut self, id: BrokerId) {
        let broker = self.brokers.get_mut(&id).unwrap();
        let _ = broker.stop.take().unwrap().send(());
        broker.stopped.take().unwrap().await.unwrap();
        broker.runtime.take().unwrap().shutdown_background();
    }

    /// Starts broker `id` again on its data directory (on a new port).
    pub(crate) async fn restart(&mut self, id: BrokerId) {
        let dir = self.brokers[&id].dir.clone();
        let broker = self.serve(id, dir).await;
        self.brokers.insert(id, broker);
    }

    /// The brokers still running.
    pub(crate) fn running(&self) -> impl Iterator<Item = (&BrokerId, &Broker)> {
        self.brokers.iter().filter(|(_, b)| b.runtime.is_some())
    }

    /// A leader-aware client bootstrapped with every running broker.
    pub(crate) fn client(&self) -> ClusterClient {
        let bootstrap = self.running().map(|(_, b)| b.addr.clone()).collect();
        let config = ClusterConfig {
            request_timeout: Duration::from_secs(3),
            retry_backoff: Duration::from_millis(50),
            delivery_timeout: Duration::from_secs(15),
        };
        ClusterClient::new(bootstrap, config)
    }

    /// The cluster as its controller has it stored, asked of a running
    /// broker (which passes the question on to the controller).
    pub(crate) async fn describe(&self) -> Option<ClusterDescription> {
        let running: Vec<String> = self.running().map(|(_, b)| b.addr.clone()).collect();
        describe_cluster(&running, Duration::from_secs(3))
            .await
            .ok()
    }

    /// Waits (at most 20 s) until the stored cluster satisfies `done`.
    pub(crate) async fn until(
        &self,
        what: &str,
        done: impl Fn(&ClusterDescription) -> bool,
    ) -> ClusterDescription {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(description) = self.describe().await
                && done(&description)
            {
                return description;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("{what}: not within 20 s; last: {:?}", self.describe().await);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops every running broker cleanly, then the coordinator.
    pub(crate) async fn shutdown(mut self) {
        let ids: Vec<BrokerId> = self.running().map(|(id, _)| *id).collect();
        for id in ids {
            self.stop(id).await;
        }
        for stop in self.coordinator_stops.drain(..) {
            let _ = stop.send(());
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for broker in self.brokers.values_mut() {
            if let Some(runtime) = broker.runtime.take() {
                runtime.shutdown_background();
            }
        }
    }
}
