//! A broker on a free loopback port, for the tests.

use std::path::Path;
use std::time::Duration;

use ch03_partitions::TopicStore;
use ch04_network::{Server, ServerConfig};
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
        TestBroker::start_with(ServerConfig::default()).await
    }

    pub(crate) async fn start_with(config: ServerConfig) -> TestBroker {
        let dir = tempfile::tempdir().unwrap();
        let (addr, stop, task) = serve(dir.path(), config).await;
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
    config: ServerConfig,
) -> (
    String,
    oneshot::Sender<()>,
    JoinHandle<Result<(), ch03_partitions::StoreError>>,
) {
    let (store, _) = TopicStore::open(dir).unwrap();
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), store, config)
        .await
        .unwrap();
    let addr = server.local_addr().to_string();
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    (addr, stop, task)
}
