//! The cluster as real processes: a `replica-node` controller and three
//! `replica-node` brokers on loopback, a producer writing with `acks=all`
//! all along, and faults only processes can have: SIGKILL (the leader dies
//! with whatever it had not replicated) and SIGSTOP (the leader freezes,
//! is replaced, and comes back believing it still leads). A history
//! checker then reads everything back.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ch02_segments::Record;
use ch03_partitions::TopicPartition;
use ch04_network::protocol::{
    ApiKey, ProducePartition, ProduceRequest, ProduceResponse, ProduceTopic,
};
use ch04_network::{Client, ErrorCode};
use ch06_replication::client::{ClusterClient, ClusterConfig};
use ch06_replication::protocol::BrokerId;
use common::{
    Acked, Node, ShowLogsOnFailure, broker_flags, check_history, checkpointed_high_watermark,
    read_replica, value, wait_until,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(10);

/// A controller process and three broker processes.
struct Processes {
    dir: tempfile::TempDir,
    controller: Node,
    brokers: Vec<(BrokerId, Node)>,
    extra: Vec<String>,
}

impl Processes {
    fn start(extra: &[&str]) -> Processes {
        let dir = tempfile::tempdir().unwrap();
        let controller = Node::start(
            &[
                "--controller-only".into(),
                "--session-timeout-ms=1500".into(),
            ],
            &dir.path().join("controller.log"),
        );
        let mut processes = Processes {
            dir,
            controller,
            brokers: Vec::new(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        for id in 1..=3 {
            let node = processes.start_broker(id);
            processes.brokers.push((id, node));
        }
        processes
    }

    fn data_dir(&self, id: BrokerId) -> PathBuf {
        self.dir.path().join(format!("broker-{id}"))
    }

    fn start_broker(&self, id: BrokerId) -> Node {
        let mut args = vec![
            format!("--node-id={id}"),
            format!("--data-dir={}", self.data_dir(id).display()),
            format!(
                "--controller={}",
                self.controller.controller.as_ref().unwrap()
            ),
        ];
        args.extend(broker_flags());
        args.extend(self.extra.iter().cloned());
        Node::start(&args, &self.dir.path().join(format!("broker-{id}.log")))
    }

    fn broker(&mut self, id: BrokerId) -> &mut Node {
        &mut self.brokers.iter_mut().find(|(b, _)| *b == id).unwrap().1
    }

    fn logs(&self) -> ShowLogsOnFailure {
        let mut logs = vec![self.controller.log.clone()];
        logs.extend(self.brokers.iter().map(|(_, n)| n.log.clone()));
        ShowLogsOnFailure(logs)
    }

    fn client(&self) -> ClusterClient {
        self.client_without(None)
    }

    /// A client that does not know broker `skip` to begin with (its first
    /// metadata question must not wait for a frozen broker).
    fn client_without(&self, skip: Option<BrokerId>) -> ClusterClient {
        let bootstrap = self
            .brokers
            .iter()
            .filter(|(id, _)| Some(*id) != skip)
            .map(|(_, n)| n.broker.clone().unwrap())
            .collect();
        ClusterClient::new(
            bootstrap,
            ClusterConfig {
                // Longer than the brokers' own `request.timeout.ms` (2 s).
                request_timeout: Duration::from_secs(3),
                retry_backoff: Duration::from_millis(50),
                delivery_timeout: Duration::from_secs(15),
            },
        )
    }
}

/// Creates the topic once all three brokers are registered.
async fn create_topic(client: &ClusterClient, tp: &TopicPartition) {
    wait_until("three live brokers", WAIT, async || {
        client.refresh_metadata().await.is_ok() && client.brokers().len() == 3
    })
    .await;
    client.create_topic(&tp.topic, 1, 3).await.unwrap();
    wait_until("a leader", WAIT, async || client.leader(tp).await.is_ok()).await;
}

/// A producer writing `v0`, `v1`, ... one record per batch with
/// `acks=all`, until told to stop; it keeps every acknowledgement.
struct Producer {
    acked: Arc<Mutex<Vec<Acked>>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<ClusterClient>,
}

impl Producer {
    fn start(client: ClusterClient, tp: TopicPartition) -> Producer {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn({
            let acked = acked.clone();
            async move {
                for n in 0.. {
                    if *stopped.borrow() {
                        break;
                    }
                    let value = format!("v{n}");
                    let produced = client.produce(&tp, &[Record::new(value.clone())]).await;
                    let produced =
                        produced.unwrap_or_else(|e| panic!("{value} never acknowledged: {e}"));
                    acked.lock().unwrap().push(Acked {
                        value,
                        offset: produced.base_offset,
                        attempts: produced.attempts,
                    });
                }
                client
            }
        });
        Producer { acked, stop, task }
    }

    fn count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Waits until `more` writes beyond those acknowledged now are.
    async fn wait_for_more(&self, more: usize) {
        let target = self.count() + more;
        wait_until(
            &format!("{target} acknowledged writes"),
            Duration::from_secs(15),
            async || {
                assert!(!self.task.is_finished(), "the producer stopped");
                self.count() >= target
            },
        )
        .await;
    }

    async fn stop(self) -> (ClusterClient, Vec<Acked>) {
        self.stop.send_replace(true);
        let client = self.task.await.unwrap();
        let acked = self.acked.lock().unwrap().clone();
        (client, acked)
    }
}

/// Reads the whole partition from its leader, up to its high watermark.
async fn read_all(client: &ClusterClient, tp: &TopicPartition) -> (Vec<(u64, String)>, u64) {
    let mut log = Vec::new();
    let mut high_watermark = u64::MAX;
    while log.len() as u64 != high_watermark {
        let fetched = client
            .fetch(tp, log.len() as u64, Duration::from_millis(100))
            .await
            .unwrap();
        high_watermark = fetched.high_watermark;
        for (offset, record) in fetched.records {
            assert_eq!(offset, log.len() as u64, "a gap in the log");
            log.push((offset, value(&record)));
        }
    }
    (log, high_watermark)
}

/// Checks the history against the leader's log, then waits for every
/// broker to have checkpointed the final high watermark, stops them
/// cleanly, and checks that each replica's log is the leader's up to its
/// own high watermark.
async fn check_everything(
    processes: &mut Processes,
    client: &ClusterClient,
    acked: &[Acked],
    tp: &TopicPartition,
) {
    let (log, high_watermark) = read_all(client, tp).await;
    let verdict = check_history(acked, &log);
    assert!(
        verdict.lost.is_empty(),
        "acknowledged writes lost: {:?}",
        verdict.lost
    );
    assert!(verdict.unexplained_duplicates.is_empty(), "{verdict:?}");
    for id in 1..=3 {
        let dir = processes.data_dir(id);
        wait_until(&format!("broker {id} to catch up"), WAIT, async || {
            checkpointed_high_watermark(&dir, tp) >= high_watermark
        })
        .await;
    }
    for id in 1..=3 {
        processes.broker(id).stop();
    }
    for id in 1..=3 {
        let (records, replica_hw) = read_replica(&processes.data_dir(id), tp);
        assert!(replica_hw >= high_watermark, "broker {id}: {replica_hw}");
        let committed = &records[..high_watermark as usize];
        assert_eq!(
            committed,
            &log[..],
            "broker {id}'s log differs below the high watermark"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_a_sigkilled_leader_and_its_return() {
    let mut processes = Processes::start(&["--min-insync-replicas=2"]);
    let _logs = processes.logs();
    let tp = TopicPartition::new("events", 0);
    let client = processes.client();
    create_topic(&client, &tp).await;
    let (first_leader, _) = client.leader(&tp).await.unwrap();

    let producer = Producer::start(processes.client(), tp.clone());
    producer.wait_for_more(100).await;
    processes.broker(first_leader).kill();
    // The producer carries on through the failover...
    producer.wait_for_more(100).await;
    client.refresh_metadata().await.unwrap();
    let (new_leader, _) = client.leader(&tp).await.unwrap();
    assert_ne!(new_leader, first_leader);
    // ...and through the old leader's return as a follower.
    let restarted = processes.start_broker(first_leader);
    *processes.broker(first_leader) = restarted;
    producer.wait_for_more(100).await;
    let (client, acked) = producer.stop().await;
    assert!(acked.len() >= 300);
    check_everything(&mut processes, &client, &acked, &tp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_replaced_while_stopped_acknowledges_nothing_when_it_wakes() {
    let mut processes = Processes::start(&["--min-insync-replicas=2"]);
    let _logs = processes.logs();
    let tp = TopicPartition::new("events", 0);
    let client = processes.client();
    create_topic(&client, &tp).await;
    let (zombie, zombie_addr) = client.leader(&tp).await.unwrap();

    let producer = Producer::start(processes.client(), tp.clone());
    producer.wait_for_more(50).await;
    processes.broker(zombie).signal("STOP");
    // Past the session timeout the controller elects another leader, and
    // with `min.insync.replicas=2` a write acknowledged there proves the
    // other follower follows the new leader too: no ISR member is left to
    // fetch from the frozen one.
    producer.wait_for_more(50).await;
    let (new_leader, _) = processes
        .client_without(Some(zombie))
        .leader(&tp)
        .await
        .unwrap();
    assert_ne!(new_leader, zombie);
    processes.broker(zombie).signal("CONT");

    // Straight to the old leader, which may not yet know it was replaced:
    // it may append, but it must not acknowledge.
    let direct = Client::connect(&zombie_addr, Duration::from_secs(5))
        .await
        .unwrap();
    let request = ProduceRequest {
        acks: -1,
        topics: vec![ProduceTopic {
            name: tp.topic.clone(),
            partitions: vec![ProducePartition {
                partition: 0,
                batch: ch02_segments::batch::encode(&[Record::new("zombie")]).unwrap(),
            }],
        }],
    };
    let answer: ProduceResponse = direct.call(ApiKey::Produce, &request).await.unwrap();
    let error = answer.topics[0].1[0].error;
    assert!(
        matches!(
            error,
            ErrorCode::NotLeaderOrFollower
                | ErrorCode::NotEnoughReplicasAfterAppend
                | ErrorCode::RequestTimedOut
        ),
        "the replaced leader answered {error}"
    );

    producer.wait_for_more(50).await;
    let (client, acked) = producer.stop().await;
    check_everything(&mut processes, &client, &acked, &tp).await;
    let (log, _) = read_replica(&processes.data_dir(new_leader), &tp);
    assert!(
        !log.iter().any(|(_, v)| v == "zombie"),
        "the zombie's write was committed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_combined_node_serves_stops_cleanly_and_reports_errors_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = format!("--data-dir={}", dir.path().join("data").display());
    let args: Vec<String> = [
        "--node-id=1",
        "--run-controller",
        data.as_str(),
        "--heartbeat-interval-ms=100",
    ]
    .map(String::from)
    .to_vec();
    let mut node = Node::start(&args, &dir.path().join("node.log"));
    let _logs = ShowLogsOnFailure(vec![node.log.clone()]);
    assert!(
        node.controller.is_some(),
        "combined mode listens for the controller too"
    );
    let client = ClusterClient::new(vec![node.broker.clone().unwrap()], ClusterConfig::default());
    let tp = TopicPartition::new("solo", 0);
    wait_until("the broker to register", WAIT, async || {
        client.refresh_metadata().await.is_ok() && client.brokers().len() == 1
    })
    .await;
    client.create_topic("solo", 1, 1).await.unwrap();
    let produced = client.produce(&tp, &[Record::new("alone")]).await.unwrap();
    assert_eq!(produced.base_offset, 0);

    // A second node on the same data directory: one line, status 1.
    let output = Command::new(env!("CARGO_BIN_EXE_replica-node"))
        .args(&args)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("in use by another process"),
        "{}",
        errors[0]
    );
    assert!(output.stdout.is_empty(), "it printed no address");

    node.stop();
}

#[test]
fn the_checker_catches_a_lost_write_and_an_unexplained_duplicate() {
    let acked = |value: &str, offset, attempts| Acked {
        value: value.to_string(),
        offset,
        attempts,
    };
    let history = [acked("a", 0, 1), acked("b", 1, 2), acked("c", 3, 1)];
    let log = |entries: &[(u64, &str)]| -> Vec<(u64, String)> {
        entries.iter().map(|(o, v)| (*o, v.to_string())).collect()
    };
    let good = check_history(&history, &log(&[(0, "a"), (1, "b"), (2, "b"), (3, "c")]));
    assert!(good.lost.is_empty() && good.unexplained_duplicates.is_empty());
    assert_eq!(good.retried_duplicates, 1);
    let bad = check_history(
        &history,
        &log(&[(0, "a"), (1, "b"), (2, "c"), (3, "x"), (4, "a")]),
    );
    assert_eq!(bad.lost, vec![acked("c", 3, 1)]);
    assert_eq!(bad.unexplained_duplicates, vec!["a".to_string()]);
}
