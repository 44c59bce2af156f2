//! `kfs perf coordinator`: load for chapter 7's coordinator ensemble, as
//! `kfs perf produce` is for a broker, with the same report.
//!
//! `--sessions` sessions, session `i` opened on server `i mod servers`,
//! each with its own node `/kfs-perf/n<i>`, and `--in-flight` requests in
//! flight on each: the client library pipelines a session's requests as
//! ZooKeeper's does (a server answers them in order, holding a read back
//! behind a write of the same session). Every request is timed from its
//! call to its answer.
//!
//! - `--op set`: each session sets its node (created first if missing):
//!   a linearizable write through the leader's log.
//! - `--op create`: each session creates new nodes
//!   (`/kfs-perf/<session>-<lane>-<k>`): writes that grow the tree.
//! - `--op get`: each session syncs once, then reads its node from its own
//!   server: ZooKeeper's reads, served locally without the log.
//!
//! Writes and reads both pipeline: a session's writes go to the log one
//! after the other without waiting, each naming the one before it (see
//! chapter 7's `node.rs`). Few sessions with many requests in flight give
//! the most: a connection's requests and answers travel in batches.
//!
//! With `--rate`, the sessions together aim at that many requests a second,
//! each on its own schedule, as `kfs perf produce --throughput` does: a
//! request that falls behind its schedule goes at once, and its latency
//! counts from when it went (the waiting before is the load tool's, not the
//! server's).

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ch07_coordinator::client::ClientConfig;
use ch07_coordinator::coordinator::{CoordError, Coordinator};
use ch07_coordinator::tree::{ANY_VERSION, TreeError};
use clap::{Args, ValueEnum};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{Recorder, print_progress};
use crate::Result;

/// The parent of every node the tool uses.
const ROOT: &str = "/kfs-perf";

/// What each request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Op {
    /// Set the session's own node (`setData`).
    Set,
    /// Create a new node.
    Create,
    /// Read the session's own node from its server (`getData`).
    Get,
}

/// `kfs perf coordinator`'s flags.
#[derive(Debug, Args)]
pub(crate) struct CoordinatorPerfArgs {
    /// The ensemble's client addresses, comma-separated.
    #[arg(long, default_value = "127.0.0.1:2181")]
    servers: String,
    /// How many sessions; session i is opened on server i mod the number
    /// of servers.
    #[arg(long, default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    sessions: u32,
    /// How many requests each session has in flight.
    #[arg(long, default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    in_flight: u32,
    /// What each request is.
    #[arg(long, value_enum, default_value_t = Op::Set)]
    op: Op,
    /// The size of each node's data, in bytes.
    #[arg(long, default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    value_size: u32,
    /// Run for this many seconds (10 if neither this nor `--requests` is
    /// given).
    #[arg(long, conflicts_with = "requests", value_parser = seconds)]
    duration: Option<f64>,
    /// Send this many requests in all, then stop.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    requests: Option<u64>,
    /// Requests per second to aim at, all sessions together; without it,
    /// as fast as the answers come.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    rate: Option<u64>,
    /// How often to print a progress line.
    #[arg(long, default_value_t = 5000)]
    reporting_interval_ms: u64,
}

/// Parses `--duration`: a positive number of seconds.
fn seconds(text: &str) -> std::result::Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s > 0.0 && s.is_finite() => Ok(s),
        _ => Err(format!(
            "expected a positive number of seconds, got {text:?}"
        )),
    }
}

/// Parses `host:port,host:port`.
fn parse_servers(text: &str) -> Result<Vec<SocketAddr>> {
    let mut servers = Vec::new();
    for addr in text.split(',').filter(|s| !s.trim().is_empty()) {
        let resolved = addr
            .trim()
            .to_socket_addrs()
            .map_err(|e| format!("bad server {addr:?}: {e}"))?
            .next()
            .ok_or_else(|| format!("cannot resolve {addr}"))?;
        servers.push(resolved);
    }
    if servers.is_empty() {
        return Err("--servers names no server".into());
    }
    Ok(servers)
}

/// What every session's loop shares.
struct Plan {
    op: Op,
    /// How many request loops run: `in_flight` on each session.
    lanes: u64,
    value: Vec<u8>,
    start: Instant,
    /// When to stop, for `--duration`.
    deadline: Option<Instant>,
    /// How many requests in all, for `--requests`, and how many have gone.
    limit: Option<u64>,
    issued: AtomicU64,
    /// The time between two requests of the whole run, for `--rate`.
    interval: Option<Duration>,
    recorder: Arc<Mutex<Recorder>>,
}

/// The session's own node.
fn own_node(i: u64) -> String {
    format!("{ROOT}/n{i}")
}

/// Creates `path` unless it is there already (another session, or an
/// earlier run, made it).
async fn ensure(zk: &Coordinator, path: &str, data: &[u8]) -> Result<()> {
    match zk.create(path, data, false, false).await {
        Ok(_) | Err(CoordError::Tree(TreeError::NodeExists { .. })) => Ok(()),
        Err(e) => Err(format!("cannot create {path}: {e}").into()),
    }
}

/// Runs `kfs perf coordinator`.
pub(crate) async fn run(args: CoordinatorPerfArgs) -> Result<()> {
    let servers = parse_servers(&args.servers)?;
    // Generous timeouts: on a machine this loaded a slow answer is still
    // an answer, and a session that moved server would measure the move.
    let config = ClientConfig {
        session_timeout_ms: 30_000,
        request_timeout_ms: 10_000,
        ping_interval_ms: 2_000,
    };
    let sessions = u64::from(args.sessions);
    eprintln!("opening {sessions} sessions on {} servers", servers.len());
    let mut opening = JoinSet::new();
    for i in 0..sessions {
        // The client library starts on the first server it is given.
        let mut order = servers.clone();
        order.rotate_left(i as usize % servers.len());
        let config = config.clone();
        opening.spawn(async move { (i, Coordinator::connect(&order, config).await) });
    }
    let mut zks: Vec<Option<Coordinator>> = (0..sessions).map(|_| None).collect();
    while let Some(joined) = opening.join_next().await {
        let (i, zk) = joined?;
        zks[i as usize] = Some(zk.map_err(|e| format!("cannot open session {i}: {e}"))?);
    }
    let zks: Vec<Coordinator> = zks.into_iter().flatten().collect();

    // Random capital letters, as `kfs perf produce` sends.
    let value: Vec<u8> = (0..args.value_size)
        .map(|_| fastrand::u8(b'A'..=b'Z'))
        .collect();
    ensure(&zks[0], ROOT, b"").await?;
    eprintln!("preparing: each session's node, and a sync for reads");
    let mut preparing = JoinSet::new();
    for (i, zk) in zks.into_iter().enumerate() {
        let (op, value) = (args.op, value.clone());
        preparing.spawn(async move {
            if op != Op::Create {
                ensure(&zk, &own_node(i as u64), &value).await?;
            }
            if op == Op::Get {
                // Its server has applied every write made before: the
                // node is there to read.
                zk.sync().await.map_err(|e| format!("sync: {e}"))?;
            }
            Result::<(usize, Coordinator)>::Ok((i, zk))
        });
    }
    let mut zks: Vec<Option<Coordinator>> = (0..sessions).map(|_| None).collect();
    while let Some(joined) = preparing.join_next().await {
        let (i, zk) = joined??;
        zks[i] = Some(zk);
    }

    let start = Instant::now();
    let expected = args.requests.unwrap_or(0).min(100_000_000) as usize;
    let recorder = Arc::new(Mutex::new(Recorder::new("requests", start, expected)));
    let duration = match (args.duration, args.requests) {
        (Some(s), _) => Some(s),
        (None, None) => Some(10.0),
        (None, Some(_)) => None,
    };
    let in_flight = u64::from(args.in_flight);
    let plan = Arc::new(Plan {
        op: args.op,
        lanes: sessions * in_flight,
        value,
        start,
        deadline: duration.map(|s| start + Duration::from_secs_f64(s)),
        limit: args.requests,
        issued: AtomicU64::new(0),
        interval: args.rate.map(|r| Duration::from_secs_f64(1.0 / r as f64)),
        recorder: recorder.clone(),
    });
    eprintln!(
        "{:?} from {sessions} sessions, {in_flight} in flight on each, {} B values{}",
        args.op,
        args.value_size,
        args.rate.map_or(String::new(), |r| format!(", at {r}/s"))
    );
    let progress = tokio::spawn(print_progress(
        recorder.clone(),
        Duration::from_millis(args.reporting_interval_ms),
    ));
    let zks: Vec<Arc<Coordinator>> = zks.into_iter().flatten().map(Arc::new).collect();
    let mut running = JoinSet::new();
    for (i, zk) in zks.iter().enumerate() {
        for lane in 0..in_flight {
            let lane = i as u64 * in_flight + lane;
            running.spawn(request_loop(lane, in_flight, zk.clone(), plan.clone()));
        }
    }
    while let Some(joined) = running.join_next().await {
        joined?;
    }
    progress.abort();
    let (summary, failed) = {
        let recorder = recorder.lock().unwrap();
        (
            recorder.summary(),
            recorder.first_error.clone().map(|e| (recorder.failed, e)),
        )
    };
    println!("{summary}");
    // Sessions end now rather than expire later (a `create` run's nodes
    // stay: they are persistent).
    let mut closing = JoinSet::new();
    // Every loop has ended and dropped its handle.
    for zk in zks.into_iter().filter_map(Arc::into_inner) {
        closing.spawn(zk.close());
    }
    while closing.join_next().await.is_some() {}
    match failed {
        None => Ok(()),
        Some((n, error)) => Err(format!("{n} requests failed; the first: {error}").into()),
    }
}

/// One of a session's request loops (`lane`, of `in_flight` on each
/// session), until the plan says stop.
async fn request_loop(lane: u64, in_flight: u64, zk: Arc<Coordinator>, plan: Arc<Plan>) {
    let path = own_node(lane / in_flight);
    let bytes = plan.value.len() as u64;
    let mut k = 0u64;
    loop {
        if let Some(interval) = plan.interval {
            // The loops' schedules interleave: together, one request
            // every `interval`.
            let due = plan.start + interval.mul_f64((k * plan.lanes + lane) as f64);
            if plan.deadline.is_some_and(|d| due >= d) {
                break;
            }
            tokio::time::sleep_until(due).await;
        }
        if plan.deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        if plan
            .limit
            .is_some_and(|limit| plan.issued.fetch_add(1, Ordering::Relaxed) >= limit)
        {
            break;
        }
        let sent_at = Instant::now();
        let result = match plan.op {
            Op::Set => zk.set(&path, &plan.value, ANY_VERSION).await.map(drop),
            Op::Create => {
                let path = format!("{ROOT}/{:x}-{lane}-{k}", zk.session());
                zk.create(&path, &plan.value, false, false).await.map(drop)
            }
            Op::Get => zk.get(&path, false).await.map(drop),
        };
        plan.recorder.lock().unwrap().record(sent_at, bytes, result);
        k += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_and_durations_are_checked() {
        let servers = parse_servers("127.0.0.1:2181, 127.0.0.1:2182").unwrap();
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[1].port(), 2182);
        assert!(parse_servers("").is_err());
        assert!(parse_servers("127.0.0.1").is_err());
        assert_eq!(seconds("2.5"), Ok(2.5));
        for bad in ["0", "-1", "soon", "inf"] {
            assert!(seconds(bad).is_err(), "{bad}");
        }
    }
}
