//! A group broker on a free loopback port, for the tests, and consumers
//! configured for fast tests (short sessions and heartbeats).

#![allow(dead_code)] // Each test file uses its own part of this.

use std::path::Path;
use std::time::Duration;

use ch03_partitions::{StoreError, TopicStore};
use ch04_network::{ConsumerConfig, OffsetReset, ServerConfig};
use ch05_consumer_groups::consumer::GroupConsumerConfig;
use ch05_consumer_groups::coordinator::CoordinatorConfig;
use ch05_consumer_groups::service::{self, GroupConfig};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running group broker; `stop` shuts it down gracefully.
pub(crate) struct TestBroker {
    pub(crate) addr: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), StoreError>>>,
}

/// Group settings for tests: sessions as short as 100 ms allowed.
pub(crate) fn group_config() -> GroupConfig {
    GroupConfig {
        coordinator: CoordinatorConfig {
            min_session_timeout: Duration::from_millis(100),
            ..CoordinatorConfig::default()
        },
        tick_interval: Duration::from_millis(20),
        ..GroupConfig::default()
    }
}

impl TestBroker {
    pub(crate) async fn start(dir: &Path) -> TestBroker {
        TestBroker::start_with(dir, ServerConfig::default(), group_config()).await
    }

    pub(crate) async fn start_with(
        dir: &Path,
        server: ServerConfig,
        groups: GroupConfig,
    ) -> TestBroker {
        let (store, _) = TopicStore::open(dir).unwrap();
        let server = service::bind("127.0.0.1:0".parse().unwrap(), store, server, groups)
            .await
            .unwrap();
        let addr = server.local_addr().to_string();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        TestBroker {
            addr,
            stop: Some(stop),
            task: Some(task),
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

/// A consumer of group `group` that notices failures within a second.
pub(crate) fn fast(group: &str, client_id: &str) -> GroupConsumerConfig {
    GroupConsumerConfig {
        client_id: client_id.into(),
        session_timeout: Duration::from_millis(1000),
        heartbeat_interval: Duration::from_millis(100),
        max_poll_interval: Duration::from_secs(3),
        auto_commit_interval: Duration::from_millis(200),
        consumer: ConsumerConfig {
            auto_offset_reset: OffsetReset::Earliest,
            fetch_max_wait: Duration::from_millis(50),
            ..ConsumerConfig::default()
        },
        ..GroupConsumerConfig::new(group)
    }
}
