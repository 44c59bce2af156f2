//! A broker on a free loopback port, for the tests.

#![allow(dead_code)] // Each test file uses its own part of this.

use std::path::Path;
use std::time::Duration;

use ch03_partitions::TopicStore;
use ch04_network::{BrokerConfig, ServerConfig, broker};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running broker; `stop` shuts it down gracefully.
pub(crate) struct TestBroker {
    pub(crate) addr: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ch03_partitions::StoreError>>>,
    pub(crate) dir: tempfile::TempDir,
}

impl TestBroker {
    pub(crate) async fn start() -> TestBroker {
        TestBroker::start_configured(ServerConfig::default(), BrokerConfig::default()).await
    }

    pub(crate) async fn start_with(server: ServerConfig) -> TestBroker {
        TestBroker::start_configured(server, BrokerConfig::default()).await
    }

    pub(crate) async fn start_with_broker(config: BrokerConfig) -> TestBroker {
        TestBroker::start_configured(ServerConfig::default(), config).await
    }

    async fn start_configured(server: ServerConfig, config: BrokerConfig) -> TestBroker {
        let dir = tempfile::tempdir().unwrap();
        let (addr, stop, task) = serve(dir.path(), server, config).await;
        TestBroker {
            addr,
            stop: Some(stop),
            task: Some(task),
            dir,
        }
    }

    /// Shuts down gracefully and waits for the store to be closed.
    pub(crate) async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("the broker shut down in time")
                .unwrap()
                .unwrap();
        }
    }
}

async fn serve(
    dir: &Path,
    server: ServerConfig,
    config: BrokerConfig,
) -> (
    String,
    oneshot::Sender<()>,
    JoinHandle<Result<(), ch03_partitions::StoreError>>,
) {
    let (store, _) = TopicStore::open(dir).unwrap();
    let server = broker::bind("127.0.0.1:0".parse().unwrap(), store, server, config)
        .await
        .unwrap();
    let addr = server.local_addr().to_string();
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    (addr, stop, task)
}
