//! A broker on a free loopback port, and a fault-injecting proxy to put in
//! front of it, for the tests.
#![allow(dead_code)] // Each test file uses its own part of this.

pub(crate) mod proxy;

use std::path::Path;
use std::time::Duration;

use ch03_partitions::TopicStore;
use ch04_network::{Broker, BrokerConfig, Server, ServerConfig};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running broker; `stop` shuts it down gracefully.
pub(crate) struct TestBroker {
    pub(crate) addr: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ch03_partitions::StoreError>>>,
    pub(crate) dir: tempfile::TempDir,
    server: ServerConfig,
    config: BrokerConfig,
    /// The address it gives clients in Metadata, if not its own (Kafka's
    /// `advertised.listeners`).
    advertised: Option<String>,
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
        TestBroker::start_advertising(server, config, None).await
    }

    async fn start_advertising(
        server: ServerConfig,
        config: BrokerConfig,
        advertised: Option<String>,
    ) -> TestBroker {
        let dir = tempfile::tempdir().unwrap();
        let at = "127.0.0.1:0";
        let (addr, stop, task) =
            serve(dir.path(), at, &server, &config, advertised.as_deref()).await;
        TestBroker {
            addr,
            stop: Some(stop),
            task: Some(task),
            dir,
            server,
            config,
            advertised,
        }
    }

    /// A broker with a fault-injecting proxy in front, which the broker
    /// advertises as its address: clients that look leaders up in
    /// Metadata (the producer, the consumer) reach it through the proxy,
    /// whatever address they start from.
    pub(crate) async fn start_behind_proxy() -> (TestBroker, proxy::Proxy) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy_addr = listener.local_addr().unwrap().to_string();
        let broker = TestBroker::start_advertising(
            ServerConfig::default(),
            BrokerConfig::default(),
            Some(proxy_addr),
        )
        .await;
        let proxy = proxy::Proxy::start_on(listener, &broker.addr);
        (broker, proxy)
    }

    /// Shuts down gracefully, then serves the same data directory on the
    /// same address again: a broker restart, as its clients see it.
    pub(crate) async fn restart(&mut self) {
        self.stop().await;
        let advertised = self.advertised.as_deref();
        let (_, stop, task) = serve(
            self.dir.path(),
            &self.addr,
            &self.server,
            &self.config,
            advertised,
        )
        .await;
        self.stop = Some(stop);
        self.task = Some(task);
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
    at: &str,
    server: &ServerConfig,
    config: &BrokerConfig,
    advertised: Option<&str>,
) -> (
    String,
    oneshot::Sender<()>,
    JoinHandle<Result<(), ch03_partitions::StoreError>>,
) {
    let (store, _) = TopicStore::open(dir).unwrap();
    let advertised = advertised.map(|a| {
        let (host, port) = a.rsplit_once(':').unwrap();
        (host.to_string(), port.parse().unwrap())
    });
    let server = Server::bind_with(at.parse().unwrap(), server.clone(), |local| {
        let (host, port) = advertised.unwrap_or((local.ip().to_string(), local.port()));
        Broker::new(store, host, port, config.clone())
    })
    .await
    .unwrap();
    let addr = server.local_addr().to_string();
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    (addr, stop, task)
}
