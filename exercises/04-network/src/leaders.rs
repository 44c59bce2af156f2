//! [`Leaders`]: where each partition's leader is, and a connection to it.
//!
//! A Kafka client never assumes one broker. It asks any broker it can
//! reach for metadata (every broker's address, and each partition's
//! leader), sends each partition's requests to that partition's leader on
//! a connection of its own per broker, and asks again when an answer says
//! the leader moved. In this chapter the one broker leads every partition,
//! so the lookup always finds it; from chapter 6 on leaders move, and the
//! producer and consumer follow them with no change.
//!
//! What makes a client ask again (Kafka's `Metadata.requestUpdate`):
//! an answer that says this broker does not lead the partition
//! (`NOT_LEADER_OR_FOLLOWER`), that it has no leader yet
//! (`LEADER_NOT_AVAILABLE`), that the client's leader epoch is old
//! (`FENCED_LEADER_EPOCH`), or that it does not know the partition
//! (`UNKNOWN_TOPIC_OR_PARTITION`: it may have just moved here); and a
//! call that got no answer at all (a dropped connection or a timeout: the
//! broker may be dead). See [`moves_leader`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use ch03_partitions::TopicPartition;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use tracing::debug;

use crate::client::{Client, ClientConfig, check};
use crate::error::{ClientError, ErrorCode};
use crate::protocol::{ApiKey, MetadataRequest, MetadataResponse};

/// The leader id Metadata gives a partition that has no leader right now.
pub const NO_LEADER: u32 = u32::MAX;

/// Chapter 4 clients, one per address, each made (and connected) the
/// first time it is needed and then shared: what a client of several
/// brokers keeps, and a broker for its leaders and controller.
pub struct Connections {
    config: ClientConfig,
    clients: Mutex<HashMap<String, Arc<Client>>>,
}

impl Connections {
    /// No connection yet; each will be made with `config`.
    pub fn new(config: ClientConfig) -> Connections {
        Connections {
            config,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The client for `addr`, connected now if there is none.
    pub async fn get(&self, addr: &str) -> Result<Arc<Client>, ClientError> {
        if let Some(client) = self.clients.lock().unwrap().get(addr) {
            return Ok(client.clone());
        }
        let client = Arc::new(Client::connect_with(addr, self.config.clone()).await?);
        // Another task may have connected meanwhile: keep the first.
        let mut clients = self.clients.lock().unwrap();
        Ok(clients.entry(addr.to_string()).or_insert(client).clone())
    }

    /// Forgets the clients of every address `keep` refuses (a broker gone,
    /// or come back on another port).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.clients.lock().unwrap().retain(|addr, _| keep(addr));
    }
}

/// The bootstrap servers of a `host:port[,host:port...]` list (Kafka's
/// `bootstrap.servers`).
pub fn bootstrap_servers(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Whether a partition's error code means the client's idea of its leader
/// may be out of date, so the next attempt must ask for metadata again.
pub fn moves_leader(code: ErrorCode) -> bool {
    todo!("exercise `moves_leader`: True for the codes that say the request went to the wrong broker, or to one that does not know yet: NOT_LEADER_OR_FOLLOWER, LEADER_NOT_AVAILABLE, FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH and UNKNOWN_TOPIC_OR_PARTITION. False for the rest (a full ISR will not come back sooner for asking where the leader is).")
}

/// What the client knows of the cluster.
#[derive(Debug, Default)]
struct Known {
    /// Every live broker's address, from the last Metadata answer.
    brokers: BTreeMap<u32, String>,
    /// Each known topic's partitions' leaders (or [`NO_LEADER`]), by
    /// partition number. A topic not here is asked about.
    topics: BTreeMap<String, Vec<u32>>,
    /// Set when an answer said a leader moved: the next lookup asks first.
    stale: bool,
    /// When a call to each address last failed to get an answer (a frozen
    /// or dead broker): metadata is asked of the others first. Cleared by
    /// an answer.
    failed: HashMap<String, Instant>,
}

/// Where each partition's leader is, learnt from Metadata, with a
/// connection per broker: what a producer or consumer needs to send each
/// partition's requests to its leader.
pub struct Leaders {
    bootstrap: Vec<String>,
    known: Mutex<Known>,
    /// A chapter 4 client per broker address.
    clients: Connections,
}

impl Leaders {
    /// Leaders first asked of the brokers at `bootstrap` (`host:port`).
    /// Nothing is connected until a call needs it.
    pub fn new(bootstrap: Vec<String>, config: ClientConfig) -> Leaders {
        Leaders {
            bootstrap,
            known: Mutex::new(Known::default()),
            clients: Connections::new(config),
        }
    }

    /// The client connected to `addr`.
    pub async fn client(&self, addr: &str) -> Result<Arc<Client>, ClientError> {
        self.clients.get(addr).await
    }

    /// One call to `addr`, remembering whether it got an answer.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        api: impl Into<u16>,
        request: &Req,
    ) -> Result<Resp, ClientError> {
        let answer = match self.clients.get(addr).await {
            Ok(client) => client.call(api, request).await,
            Err(e) => Err(e),
        };
        self.answered(addr, &answer);
        answer
    }

    /// Notes how a call to `addr` went: one that got no answer (a dropped
    /// connection, a timeout) makes `addr` the last to be asked for
    /// metadata, and the next lookup ask again; an answer clears that.
    pub fn answered<T>(&self, addr: &str, answer: &Result<T, ClientError>) {
        let mut known = self.known.lock().unwrap();
        match answer {
            Err(ClientError::Io { .. } | ClientError::Timeout(_)) => {
                known.failed.insert(addr.to_string(), Instant::now());
                known.stale = true;
            }
            _ => {
                known.failed.remove(addr);
            }
        }
    }

    /// Marks what is known as out of date (an answer said a leader moved):
    /// the next lookup asks for metadata first.
    pub fn forget(&self) {
        self.known.lock().unwrap().stale = true;
    }

    /// Asks for metadata again (every topic, with `topics` `None`), of the
    /// brokers it knows and the bootstrap addresses in turn until one
    /// answers: first those that have not failed, then those that failed
    /// longest ago. (Kafka's client, too, asks its "least loaded" broker,
    /// not one it cannot reach.)
    pub async fn refresh(&self, topics: Option<Vec<String>>) -> Result<(), ClientError> {
        let mut last = ClientError::Closed;
        for addr in self.addresses() {
            let request = MetadataRequest {
                topics: topics.clone(),
            };
            match self.call(&addr, ApiKey::Metadata, &request).await {
                Ok(response) => {
                    self.learn(response, topics.is_none());
                    return Ok(());
                }
                Err(e) => {
                    debug!(%addr, error = %e, "metadata failed");
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// The addresses to ask, known brokers then bootstrap ones, those that
    /// failed last at the end.
    fn addresses(&self) -> Vec<String> {
        let known = self.known.lock().unwrap();
        let mut addresses: Vec<String> = known.brokers.values().cloned().collect();
        for addr in &self.bootstrap {
            if !addresses.contains(addr) {
                addresses.push(addr.clone());
            }
        }
        // A stable sort: `None` (never failed) first.
        addresses.sort_by_key(|addr| known.failed.get(addr).copied());
        addresses
    }

    fn learn(&self, response: MetadataResponse, every_topic: bool) {
        let mut known = self.known.lock().unwrap();
        known.brokers = response
            .brokers
            .into_iter()
            .map(|(id, host, port)| (id, format!("{host}:{port}")))
            .collect();
        if every_topic {
            known.topics.clear();
        }
        for topic in response.topics {
            if topic.error != ErrorCode::None {
                known.topics.remove(&topic.name);
                continue;
            }
            let mut leaders = vec![NO_LEADER; topic.partitions.len()];
            for (partition, leader) in topic.partitions {
                if let Some(slot) = leaders.get_mut(partition as usize) {
                    *slot = leader;
                }
            }
            known.topics.insert(topic.name, leaders);
        }
        known.stale = false;
    }

    /// The live brokers and their addresses, as the last Metadata answer
    /// listed them.
    pub fn brokers(&self) -> BTreeMap<u32, String> {
        self.known.lock().unwrap().brokers.clone()
    }

    /// Some broker's address, known or bootstrap, one that has not failed
    /// lately if there is one.
    pub async fn any_broker(&self) -> Result<String, ClientError> {
        if self.known.lock().unwrap().brokers.is_empty() {
            self.refresh(None).await?;
        }
        self.addresses()
            .into_iter()
            .next()
            .ok_or(ClientError::Closed)
    }

    /// The number of partitions of `topic` if it is known, without a
    /// call: the producer asks for every record.
    pub fn known_partition_count(&self, topic: &str) -> Option<u32> {
        let known = self.known.lock().unwrap();
        known.topics.get(topic).map(|leaders| leaders.len() as u32)
    }

    /// The number of partitions of `topic`, asked for if not known; the
    /// broker's error (`UNKNOWN_TOPIC_OR_PARTITION`, ...) if it has none.
    pub async fn partition_count(&self, topic: &str) -> Result<u32, ClientError> {
        if let Some(count) = self.known_partition_count(topic) {
            return Ok(count);
        }
        // Ask about this topic by name, so that the broker says why not.
        let addr = self.any_broker().await?;
        let request = MetadataRequest {
            topics: Some(vec![topic.to_string()]),
        };
        let response: MetadataResponse = self.call(&addr, ApiKey::Metadata, &request).await?;
        if let Some(found) = response.topics.iter().find(|t| t.name == topic) {
            check(found.error, || format!("topic {topic:?}"))?;
        }
        self.learn(response, false);
        let known = self.known.lock().unwrap();
        match known.topics.get(topic) {
            Some(leaders) => Ok(leaders.len() as u32),
            None => Err(ClientError::Broker {
                code: ErrorCode::UnknownTopicOrPartition,
                message: format!("topic {topic:?}"),
            }),
        }
    }

    /// The leader of `tp` and its address, asking for metadata first if
    /// an answer said a leader moved, or if `tp` is not known.
    /// `LEADER_NOT_AVAILABLE` while the partition has none (or the
    /// leader's address is unknown), `UNKNOWN_TOPIC_OR_PARTITION` if no
    /// such partition exists; either way the next lookup asks again.
    pub async fn leader(&self, tp: &TopicPartition) -> Result<(u32, String), ClientError> {
        let fresh = {
            let known = self.known.lock().unwrap();
            !known.stale && known.topics.contains_key(&tp.topic)
        };
        if !fresh {
            self.refresh(None).await?;
        }
        let mut known = self.known.lock().unwrap();
        let leader = known
            .topics
            .get(&tp.topic)
            .and_then(|leaders| leaders.get(tp.partition as usize));
        let (code, message) = match leader {
            None => (ErrorCode::UnknownTopicOrPartition, tp.to_string()),
            Some(&NO_LEADER) => (ErrorCode::LeaderNotAvailable, tp.to_string()),
            Some(id) => match known.brokers.get(id) {
                Some(addr) => return Ok((*id, addr.clone())),
                None => (ErrorCode::LeaderNotAvailable, format!("{tp}: broker {id}")),
            },
        };
        // An election may be under way: ask again next time.
        known.stale = true;
        Err(ClientError::Broker { code, message })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_move_asks_again_and_a_full_isr_does_not() {
        assert!(moves_leader(ErrorCode::NotLeaderOrFollower));
        assert!(moves_leader(ErrorCode::FencedLeaderEpoch));
        assert!(moves_leader(ErrorCode::LeaderNotAvailable));
        assert!(!moves_leader(ErrorCode::NotEnoughReplicas));
        assert!(!moves_leader(ErrorCode::None));
        assert!(!moves_leader(ErrorCode::MessageTooLarge));
    }

    #[test]
    fn bootstrap_lists_split_on_commas() {
        assert_eq!(
            bootstrap_servers("127.0.0.1:9092, 127.0.0.1:9093,"),
            vec!["127.0.0.1:9092", "127.0.0.1:9093"]
        );
    }
}
