//! A cluster in one process: a controller and brokers, each behind its own
//! server on a free loopback port, each in its own data directory.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use ch03_partitions::TopicStore;
use ch04_network::ServerConfig;
use ch06_replication::client::{ClusterClient, ClusterConfig};
use ch06_replication::controller::ControllerConfig;
use ch06_replication::controller_service::{self, ControllerServiceConfig, ControllerView};
use ch06_replication::protocol::BrokerId;
use ch06_replication::service::{self, Replicas, ReplicationConfig, ShutdownError};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running server's handle: `stop` shuts it down cleanly.
struct Running<E> {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), E>>,
}

impl<E: std::fmt::Debug> Running<E> {
    async fn stop(self) {
        // The server may have ended already; its result says how.
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

/// One broker of the cluster.
pub(crate) struct Broker {
    pub(crate) addr: String,
    pub(crate) replicas: Replicas,
    pub(crate) dir: PathBuf,
    running: Option<Running<ShutdownError>>,
}

/// A controller and brokers 1..=n.
pub(crate) struct Cluster {
    pub(crate) controller: ControllerView,
    pub(crate) controller_addr: String,
    controller_running: Option<Running<std::convert::Infallible>>,
    pub(crate) brokers: BTreeMap<BrokerId, Broker>,
    configure: fn(&mut ReplicationConfig),
    _dir: tempfile::TempDir,
}

/// The session timeout the tests' controller uses, unless a test asks
/// for another.
pub(crate) const SESSION_TIMEOUT_MS: u64 = 1_000;

/// Short timings, so that failures are noticed within a second or two.
pub(crate) fn fast(config: &mut ReplicationConfig) {
    config.heartbeat_interval = Duration::from_millis(100);
    config.replica_fetch_wait_max = Duration::from_millis(100);
    config.replica_fetch_backoff = Duration::from_millis(50);
    config.tick_interval = Duration::from_millis(50);
    config.request_timeout = Duration::from_secs(2);
    config.manager.request_timeout_ms = 2_000;
    config.manager.replica.replica_lag_time_max_ms = 1_000;
    config.manager.high_watermark_checkpoint_interval_ms = 100;
}

impl Cluster {
    /// A controller and `n` brokers, each configured by `fast` and then
    /// `configure`.
    pub(crate) async fn start(n: u32, configure: fn(&mut ReplicationConfig)) -> Cluster {
        Cluster::start_with_session_timeout(n, SESSION_TIMEOUT_MS, configure).await
    }

    /// [`Cluster::start`] with the controller's session timeout.
    pub(crate) async fn start_with_session_timeout(
        n: u32,
        session_timeout_ms: u64,
        configure: fn(&mut ReplicationConfig),
    ) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let config = ControllerServiceConfig {
            controller: ControllerConfig {
                session_timeout_ms,
                ..ControllerConfig::default()
            },
            tick_interval: Duration::from_millis(50),
        };
        let addr = "127.0.0.1:0".parse().unwrap();
        let (server, controller) = controller_service::bind(addr, ServerConfig::default(), config)
            .await
            .unwrap();
        let controller_addr = server.local_addr().to_string();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            // A dropped sender stops it too.
            let _ = stopped.await;
        }));
        let mut cluster = Cluster {
            controller,
            controller_addr,
            controller_running: Some(Running { stop, task }),
            brokers: BTreeMap::new(),
            configure,
            _dir: dir,
        };
        for id in 1..=n {
            let dir = cluster._dir.path().join(format!("broker-{id}"));
            let broker = cluster.serve(id, dir).await;
            cluster.brokers.insert(id, broker);
        }
        cluster
    }

    async fn serve(&self, id: BrokerId, dir: PathBuf) -> Broker {
        let (store, _) = TopicStore::open(&dir).unwrap();
        let mut config = ReplicationConfig::new(id, self.controller_addr.clone());
        fast(&mut config);
        (self.configure)(&mut config);
        let addr = "127.0.0.1:0".parse().unwrap();
        let (server, replicas) = service::bind(addr, store, ServerConfig::default(), config)
            .await
            .unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let broker_addr = server.local_addr().to_string();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        Broker {
            addr: broker_addr,
            replicas,
            dir,
            running: Some(Running { stop, task }),
        }
    }

    /// Shuts broker `id` down cleanly.
    pub(crate) async fn stop(&mut self, id: BrokerId) {
        let broker = self.brokers.get_mut(&id).unwrap();
        broker.running.take().expect("running").stop().await;
    }

    /// Starts broker `id` again on its data directory (on a new port).
    pub(crate) async fn restart(&mut self, id: BrokerId) {
        let dir = self.brokers[&id].dir.clone();
        let broker = self.serve(id, dir).await;
        self.brokers.insert(id, broker);
    }

    /// Waits (up to 10 s) until the controller has heard from every
    /// broker, so that a topic can be spread over all of them.
    pub(crate) async fn wait_until_all_alive(&self) {
        super::wait_until("every broker alive", Duration::from_secs(10), async || {
            self.brokers.keys().all(|&id| self.controller.is_alive(id))
        })
        .await;
    }

    /// Every broker's address.
    pub(crate) fn addresses(&self) -> Vec<String> {
        self.brokers.values().map(|b| b.addr.clone()).collect()
    }

    /// A leader-aware client bootstrapped with every broker.
    pub(crate) fn client(&self) -> ClusterClient {
        let bootstrap = self.addresses();
        let config = ClusterConfig {
            request_timeout: Duration::from_secs(3),
            retry_backoff: Duration::from_millis(50),
            delivery_timeout: Duration::from_secs(10),
        };
        ClusterClient::new(bootstrap, config)
    }

    /// Stops every broker and the controller cleanly.
    pub(crate) async fn shutdown(mut self) {
        for broker in self.brokers.values_mut() {
            if let Some(running) = broker.running.take() {
                running.stop().await;
            }
        }
        self.controller_running.take().unwrap().stop().await;
    }
}
