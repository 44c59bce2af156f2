//! [`Consumer`]: reads assigned partitions at its own pace. It pulls: each
//! `poll` sends one fetch for all its partitions from the positions it
//! keeps, and the broker holds the fetch until there is data or the wait
//! is over (long polling). Chapter 5 adds groups and committed offsets.
//!
//! Each partition is read from its leader ([`Leaders`]): a round sends one
//! fetch to each broker that leads an assigned partition, all in flight at
//! once. A broken connection or a leader that moved does not end a
//! consumer: `poll` fetches again (after asking for metadata, and the
//! client connects again after its backoff) from the positions it keeps,
//! which move only past records `poll` has returned, so nothing is skipped
//! and nothing read twice.

use std::collections::BTreeMap;
use std::time::Duration;

use ch02_segments::{Record, batch};
use ch03_partitions::TopicPartition;
use tokio::time::Instant;

use crate::client::{ClientConfig, check};
use crate::error::{ClientError, ErrorCode};
use crate::leaders::{Leaders, bootstrap_servers, moves_leader};
use crate::protocol::{
    ApiKey, EARLIEST, FetchPartition, FetchRequest, FetchResponse, LATEST, ListOffsetsRequest,
    ListOffsetsResponse,
};

/// Where to start when there is no position, or it is out of range
/// (`auto.offset.reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    /// The first offset still stored.
    Earliest,
    /// The offset the next record will get (Kafka's default).
    Latest,
    /// Neither: `poll` returns `OFFSET_OUT_OF_RANGE`.
    None,
}

/// How a consumer behaves, by Kafka's names.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// `auto.offset.reset`.
    pub auto_offset_reset: OffsetReset,
    /// `fetch.min.bytes`: the broker answers once it has this many bytes.
    pub fetch_min_bytes: u32,
    /// `fetch.max.wait.ms`: or once it has waited this long.
    pub fetch_max_wait: Duration,
    /// `fetch.max.bytes`: at most about this much per fetch.
    pub fetch_max_bytes: u32,
    /// `max.partition.fetch.bytes`: at most about this much per partition.
    pub max_partition_fetch_bytes: u32,
    /// `request.timeout.ms`.
    pub request_timeout: Duration,
    /// `retry.backoff.ms`: the wait before fetching again when a
    /// partition's leader is not known, or moved (Kafka: 100 ms).
    pub retry_backoff: Duration,
    /// `reconnect.backoff.ms`: the first wait before connecting again.
    pub reconnect_backoff: Duration,
    /// `reconnect.backoff.max.ms`: the longest wait before connecting
    /// again (the wait doubles per failure in a row).
    pub reconnect_backoff_max: Duration,
}

impl ConsumerConfig {
    /// The settings of the consumer's connections.
    pub fn client(&self) -> ClientConfig {
        ClientConfig {
            request_timeout: self.request_timeout,
            reconnect_backoff: self.reconnect_backoff,
            reconnect_backoff_max: self.reconnect_backoff_max,
        }
    }
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            auto_offset_reset: OffsetReset::Latest,
            fetch_min_bytes: 1,
            fetch_max_wait: Duration::from_millis(500),
            fetch_max_bytes: 50 * 1024 * 1024,
            max_partition_fetch_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            retry_backoff: Duration::from_millis(100),
            reconnect_backoff: ClientConfig::default().reconnect_backoff,
            reconnect_backoff_max: ClientConfig::default().reconnect_backoff_max,
        }
    }
}

/// Where [`Consumer::seek`] moves a position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeekTo {
    /// The first offset still stored.
    Beginning,
    /// The log end: only records produced from now on.
    End,
    /// This offset.
    Offset(u64),
    /// The first record at or after this timestamp (ms), or the end.
    Timestamp(i64),
}

/// A record, with where it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// Its topic.
    pub topic: String,
    /// Its partition.
    pub partition: u32,
    /// Its offset.
    pub offset: u64,
    /// The record.
    pub record: Record,
}

/// A consumer of assigned partitions.
pub struct Consumer {
    /// Where each partition's leader is: where its fetches go.
    leaders: Leaders,
    config: ConsumerConfig,
    /// Each assigned partition's next offset to read; `None` until known.
    positions: BTreeMap<TopicPartition, Option<u64>>,
}

impl Consumer {
    /// Connects to the brokers at `bootstrap` (`host:port`, or a comma
    /// separated list: Kafka's `bootstrap.servers`), asking one of them for
    /// metadata now, so that no broker to reach is an error at once.
    pub async fn connect(bootstrap: &str, config: ConsumerConfig) -> Result<Consumer, ClientError> {
        let leaders = Leaders::new(bootstrap_servers(bootstrap), config.client());
        leaders.refresh(None).await?;
        Ok(Consumer {
            leaders,
            config,
            positions: BTreeMap::new(),
        })
    }

    /// The number of partitions of `topic`.
    pub async fn partitions_for(&self, topic: &str) -> Result<u32, ClientError> {
        self.leaders.partition_count(topic).await
    }

    /// Reads exactly these partitions from now on. Positions of partitions
    /// kept are kept; new ones start per `auto.offset.reset` unless sought.
    pub fn assign(&mut self, partitions: impl IntoIterator<Item = TopicPartition>) {
        let old = std::mem::take(&mut self.positions);
        for tp in partitions {
            let position = old.get(&tp).copied().flatten();
            self.positions.insert(tp, position);
        }
    }

    /// The assigned partitions.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.positions.keys().cloned().collect()
    }

    /// The next offset `poll` will return for a partition, if known.
    pub fn position(&self, tp: &TopicPartition) -> Option<u64> {
        self.positions.get(tp).copied().flatten()
    }

    /// Moves an assigned partition's position.
    pub async fn seek(&mut self, tp: &TopicPartition, to: SeekTo) -> Result<(), ClientError> {
        if !self.positions.contains_key(tp) {
            return Err(ClientError::Broker {
                code: ErrorCode::UnknownTopicOrPartition,
                message: format!("{tp} is not assigned to this consumer"),
            });
        }
        let offset = match to {
            SeekTo::Offset(offset) => offset,
            SeekTo::Beginning => self.list_offset(tp, EARLIEST).await?,
            SeekTo::End => self.list_offset(tp, LATEST).await?,
            SeekTo::Timestamp(ts) => match self.lookup(tp, ts).await? {
                Some(offset) => offset,
                None => self.list_offset(tp, LATEST).await?,
            },
        };
        self.positions.insert(tp.clone(), Some(offset));
        Ok(())
    }

    async fn list_offset(&self, tp: &TopicPartition, at: i64) -> Result<u64, ClientError> {
        self.lookup(tp, at)
            .await?
            .ok_or_else(|| ClientError::Protocol("no offset for the earliest or latest".into()))
    }

    async fn lookup(&self, tp: &TopicPartition, at: i64) -> Result<Option<u64>, ClientError> {
        let request = ListOffsetsRequest {
            partitions: vec![(tp.topic.clone(), tp.partition, at)],
        };
        let (_, addr) = self.leaders.leader(tp).await?;
        let response: ListOffsetsResponse = self
            .leaders
            .call(&addr, ApiKey::ListOffsets, &request)
            .await?;
        let (_, _, error, offset) = response
            .partitions
            .into_iter()
            .next()
            .ok_or_else(|| ClientError::Protocol("an empty ListOffsets response".into()))?;
        if moves_leader(error) {
            self.leaders.forget();
        }
        check(error, || tp.to_string())?;
        Ok(offset)
    }

    /// Resets a position per `auto.offset.reset`.
    async fn reset(&mut self, tp: &TopicPartition) -> Result<(), ClientError> {
        let to = match self.config.auto_offset_reset {
            OffsetReset::Earliest => SeekTo::Beginning,
            OffsetReset::Latest => SeekTo::End,
            OffsetReset::None => {
                return Err(ClientError::Broker {
                    code: ErrorCode::OffsetOutOfRange,
                    message: format!("{tp} has no valid position and auto.offset.reset is none"),
                });
            }
        };
        self.seek(tp, to).await
    }

    // ANCHOR: poll
    /// Returns the records that are there, waiting up to `timeout` for some
    /// to arrive; an empty vector if none did. A broken connection, a
    /// timed-out fetch or a leader that moved is not an error: it fetches
    /// again, from the same positions, until `timeout` (which reconnecting
    /// may overrun by up to `reconnect.backoff.max.ms`). Kafka's `poll`,
    /// too, rides them out.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>, ClientError> {
        // exercise-hole: poll | Loop until `timeout` (a deadline computed once): fetch a round (`self.fetch(deadline)`) and return its records if there are any; a connection error or a timed-out fetch (`ClientError::Io` or `ClientError::Timeout`) just means fetching again, any other error is returned; once the deadline has passed, return an empty vector. (A round that found a partition's leader gone has already waited `retry.backoff.ms`.)
        // exercise-hint: The broker does the waiting (each fetch is long-polled until at most the deadline), so the loop is short: it only decides, after each round, whether to return or go round again. Positions move only when records are returned, so a failed round fetches again from the same place.
        // exercise-hint: `match self.fetch(deadline).await { Ok(records) if !records.is_empty() => return Ok(records), Ok(_) => {}, Err(e @ (ClientError::Io { .. } | ClientError::Timeout(_))) => { /* log it */ }, Err(e) => return Err(e) }`, then `if Instant::now() >= deadline { return Ok(Vec::new()); }`.
        let deadline = Instant::now() + timeout;
        loop {
            match self.fetch(deadline).await {
                Ok(records) if !records.is_empty() => return Ok(records),
                Ok(_) => {}
                Err(e @ (ClientError::Io { .. } | ClientError::Timeout(_))) => {
                    tracing::debug!(error = %e, "fetch failed; fetching again");
                }
                Err(e) => return Err(e),
            }
            if Instant::now() >= deadline {
                return Ok(Vec::new());
            }
        }
        // exercise-end
    }

    /// One round: positions found where unknown, then one fetch to each
    /// leader of an assigned partition, all in flight at once, each
    /// waiting at most until `deadline`. Partitions whose leader is not
    /// known wait for the next round (and the round waits
    /// `retry.backoff.ms` first); their records come from the others.
    async fn fetch(&mut self, deadline: Instant) -> Result<Vec<ConsumerRecord>, ClientError> {
        let unknown: Vec<TopicPartition> = self
            .positions
            .iter()
            .filter(|(_, p)| p.is_none())
            .map(|(tp, _)| tp.clone())
            .collect();
        let mut leader_gone = false;
        for tp in unknown {
            match self.reset(&tp).await {
                Ok(()) => {}
                Err(e) if e.code().is_some_and(moves_leader) => leader_gone = true,
                Err(e) => {
                    if e.is_retriable() {
                        self.back_off(deadline).await;
                    }
                    return Err(e);
                }
            }
        }
        let mut by_leader: BTreeMap<String, Vec<FetchPartition>> = BTreeMap::new();
        for (tp, position) in &self.positions {
            let Some(position) = position else { continue };
            match self.leaders.leader(tp).await {
                Ok((_, addr)) => by_leader.entry(addr).or_default().push(FetchPartition {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    offset: *position as i64,
                    max_bytes: self.config.max_partition_fetch_bytes,
                }),
                Err(e) if e.code().is_some_and(moves_leader) => leader_gone = true,
                Err(e) => return Err(e),
            }
        }
        if by_leader.is_empty() {
            // Nothing to fetch: nothing assigned, or no leader known. Wait
            // as a fetch with nothing to return would, so that `poll` does
            // not spin: on a one-thread runtime, a loop that never waits
            // starves the tasks that would give it work (a group's
            // rebalance).
            let pause = if leader_gone {
                self.config.retry_backoff
            } else {
                self.config.fetch_max_wait
            };
            tokio::time::sleep_until((Instant::now() + pause).min(deadline)).await;
            return Ok(Vec::new());
        }
        if leader_gone {
            self.back_off(deadline).await;
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        let mut clients = Vec::with_capacity(by_leader.len());
        let mut requests = Vec::with_capacity(by_leader.len());
        for (addr, partitions) in by_leader {
            clients.push((addr.clone(), self.leaders.client(&addr).await));
            requests.push(FetchRequest {
                max_wait_ms: wait.min(self.config.fetch_max_wait).as_millis() as u32,
                min_bytes: self.config.fetch_min_bytes,
                max_bytes: self.config.fetch_max_bytes,
                partitions,
            });
        }
        // Every fetch is written before any answer is awaited: the leaders
        // hold them at the same time, and the round takes as long as the
        // slowest, not the sum.
        let mut answers = Vec::with_capacity(requests.len());
        for ((_, client), request) in clients.iter().zip(&requests) {
            answers.push(match client {
                Ok(client) => client.write_request(ApiKey::Fetch, request, &[]).await,
                Err(e) => Err(e.duplicate()),
            });
        }
        let mut records = Vec::new();
        let mut failed = None;
        for ((addr, _), answer) in clients.iter().zip(answers) {
            let response = match answer {
                Ok(answer) => answer.response::<FetchResponse>().await,
                Err(e) => Err(e),
            };
            self.leaders.answered(addr, &response);
            match response {
                Ok(response) => records.extend(self.take_records(response)?),
                // The whole fetch refused: this broker leads none of them.
                Err(e) if e.code().is_some_and(moves_leader) => self.leaders.forget(),
                Err(e) => failed = Some(e),
            }
        }
        // Records read from one leader are returned even if another failed.
        match failed {
            Some(e) if records.is_empty() => {
                // A refused connection fails in no time: not again at once.
                self.back_off(deadline).await;
                Err(e)
            }
            _ => Ok(records),
        }
    }

    /// Waits `retry.backoff.ms`, or until `deadline` if that comes first.
    async fn back_off(&self, deadline: Instant) {
        let backoff = Instant::now() + self.config.retry_backoff;
        tokio::time::sleep_until(backoff.min(deadline)).await;
    }
    // ANCHOR_END: poll

    // ANCHOR: take_records
    /// Decodes a fetch's batches into records from each position on, and
    /// moves the positions past them. No call to the broker here: records
    /// taken are returned, whatever happens next.
    fn take_records(
        &mut self,
        response: FetchResponse,
    ) -> Result<Vec<ConsumerRecord>, ClientError> {
        // exercise-hole: take_records | For each partition of the response: on `OffsetOutOfRange`, forget its position (`None`: reset at the next round) and skip it; on a code that `moves_leader`, tell `self.leaders.forget()` (the next round asks where the leader is now) and skip it; on any other error, return it as `ClientError::Broker`; else decode each batch (`batch::decode`) and keep the records at or past the partition's position, moving the position past each one kept. Skip partitions no longer assigned.
        // exercise-hint: A fetch returns whole batches, so the first one can start before the position: compare each record's offset with the position, not the batch's. Update `self.positions` once per partition, after its batches.
        // exercise-hint: `let Some(Some(mut position)) = self.positions.get(&tp).copied() else { continue };` then for each `(offset, record)` of `batch::decode(&stored.0)`: `if offset >= position { records.push(ConsumerRecord { .. }); position = offset + 1; }`, and finally `self.positions.insert(tp, Some(position))`.
        let mut records = Vec::new();
        for p in response.partitions {
            let tp = TopicPartition::new(p.topic, p.partition);
            match p.error {
                ErrorCode::None => {}
                // Reset per `auto.offset.reset` at the next round.
                ErrorCode::OffsetOutOfRange => {
                    if let Some(position) = self.positions.get_mut(&tp) {
                        *position = None;
                    }
                    continue;
                }
                // Read it from its new leader at the next round.
                code if moves_leader(code) => {
                    self.leaders.forget();
                    continue;
                }
                code => {
                    return Err(ClientError::Broker {
                        code,
                        message: format!("fetching {tp}"),
                    });
                }
            }
            let Some(Some(mut position)) = self.positions.get(&tp).copied() else {
                continue; // unassigned meanwhile
            };
            for stored in p.batches {
                let (_, batch_records) =
                    batch::decode(&stored.0).map_err(|e| ClientError::Protocol(e.to_string()))?;
                for (offset, record) in batch_records {
                    // A fetch returns whole batches: skip what was read.
                    if offset >= position {
                        records.push(ConsumerRecord {
                            topic: tp.topic.clone(),
                            partition: tp.partition,
                            offset,
                            record,
                        });
                        position = offset + 1;
                    }
                }
            }
            self.positions.insert(tp, Some(position));
        }
        Ok(records)
        // exercise-end
    }
    // ANCHOR_END: take_records
}
