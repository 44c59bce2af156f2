//! `kfs coordinator` and `kfs zk`: chapter 7's coordinator as a server
//! process started like ZooKeeper, and a shell modelled on ZooKeeper's
//! (`zkCli.sh`, Kafka's `zookeeper-shell`).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use ch07_coordinator::client::ClientConfig;
use ch07_coordinator::coordinator::Coordinator;
use ch07_coordinator::raft::RaftConfig;
use ch07_coordinator::shell::{self, Member, ShellConfig};
use ch07_coordinator::tree::{ANY_VERSION, Stat, Version};
use clap::{Args, Subcommand};
use tokio::net::TcpListener;
use tracing::info;
use tracing_subscriber::EnvFilter;

use crate::Result;
use crate::signal;

/// `kfs coordinator`'s flags, ZooKeeper's settings by other names.
#[derive(Debug, Args)]
pub(crate) struct CoordinatorArgs {
    /// This server's id in the ensemble (ZooKeeper's `myid`).
    #[arg(long)]
    id: u32,
    /// Where it keeps its log, snapshot and vote (`dataDir`).
    #[arg(long, default_value = "./coordinator")]
    data_dir: PathBuf,
    /// Every server: `id=host:client_port:peer_port`, comma-separated
    /// (ZooKeeper's `server.N` lines). One entry runs a single server.
    #[arg(long, default_value = "1=127.0.0.1:2181:2881")]
    ensemble: String,
    /// Log entries between snapshots: after half this many to this many
    /// (a point drawn anew each time, so the servers do not all pause at
    /// once), the server writes a snapshot of its tree and drops the log
    /// before it (`snapCount`).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    snap_count: u64,
}

/// Parses `1=127.0.0.1:2181:2881,2=...`.
fn parse_ensemble(text: &str) -> Result<BTreeMap<u32, Member>> {
    let mut members = BTreeMap::new();
    for item in text.split(',').filter(|s| !s.is_empty()) {
        let bad = || format!("bad ensemble entry {item:?}: expected id=host:client_port:peer_port");
        let (id, rest) = item.split_once('=').ok_or_else(bad)?;
        let id: u32 = id.trim().parse().map_err(|_| bad())?;
        let (host_client, peer_port) = rest.rsplit_once(':').ok_or_else(bad)?;
        let (host, client_port) = host_client.rsplit_once(':').ok_or_else(bad)?;
        let resolve = |port: &str| -> Result<SocketAddr> {
            let port: u16 = port.parse().map_err(|_| bad())?;
            Ok((host, port)
                .to_socket_addrs()?
                .next()
                .ok_or_else(|| format!("cannot resolve {host}"))?)
        };
        let member = Member {
            client: resolve(client_port)?,
            peer: resolve(peer_port)?,
        };
        if members.insert(id, member).is_some() {
            return Err(format!("server {id} is in the ensemble twice").into());
        }
    }
    Ok(members)
}

/// Runs one coordinator server until SIGINT or SIGTERM.
pub(crate) async fn coordinator(args: CoordinatorArgs) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let ensemble = parse_ensemble(&args.ensemble)?;
    let me = *ensemble
        .get(&args.id)
        .ok_or_else(|| format!("server {} is not in the ensemble", args.id))?;
    let clients = TcpListener::bind(me.client)
        .await
        .map_err(|e| format!("cannot listen for clients on {}: {e}", me.client))?;
    let peers = TcpListener::bind(me.peer)
        .await
        .map_err(|e| format!("cannot listen for peers on {}: {e}", me.peer))?;
    println!(
        "kfs coordinator {} listening on {} (clients) and {} (peers)",
        args.id,
        clients.local_addr()?,
        peers.local_addr()?
    );
    std::io::stdout().flush()?;
    let config = ShellConfig {
        id: args.id,
        ensemble,
        data_dir: args.data_dir,
        raft: RaftConfig {
            election_timeout_ms: 1_000,
            heartbeat_interval_ms: 100,
            max_entries_per_message: 4096,
        },
        tick: Duration::from_millis(10),
        snapshot_every: args.snap_count,
    };
    let shutdown = async {
        let name = signal::stop().await;
        info!(signal = name, "stopping");
    };
    shell::run(config, clients, peers, shutdown).await?;
    Ok(())
}

/// `kfs zk`: the shell's commands.
#[derive(Debug, Args)]
pub(crate) struct ZkArgs {
    /// The ensemble's client addresses, comma-separated.
    #[arg(long, default_value = "127.0.0.1:2181")]
    server: String,
    /// The session's timeout in ms: how long the ensemble keeps the
    /// session (and its ephemeral nodes) after it last heard from this
    /// command (zkCli's `-timeout`).
    #[arg(
        long,
        default_value_t = 10_000,
        value_name = "MS",
        value_parser = clap::value_parser!(u64).range(100..)
    )]
    session_timeout: u64,
    #[command(subcommand)]
    command: ZkCommand,
}

#[derive(Debug, Subcommand)]
enum ZkCommand {
    /// Create a node; prints its path.
    Create {
        /// Make it ephemeral: it lives as long as this command's session,
        /// so the command keeps the session open after printing the path,
        /// until Ctrl-C or SIGTERM, and then ends it (the node goes at
        /// once). Killed any other way, the command leaves the node until
        /// the session times out (`--session-timeout`).
        #[arg(long)]
        ephemeral: bool,
        /// Append a counter to its name.
        #[arg(long)]
        sequential: bool,
        /// The path.
        path: String,
        /// Its data.
        #[arg(default_value = "")]
        data: String,
    },
    /// Print a node's data.
    Get {
        /// The path.
        path: String,
    },
    /// Set a node's data, if it has `--version`.
    Set {
        /// The path.
        path: String,
        /// The new data.
        data: String,
        /// The version it must have.
        #[arg(long, default_value_t = ANY_VERSION, allow_negative_numbers = true)]
        version: Version,
    },
    /// List a node's children.
    Ls {
        /// The path.
        path: String,
    },
    /// Print a node's stat.
    Stat {
        /// The path.
        path: String,
    },
    /// Delete a node, if it has `--version`.
    Delete {
        /// The path.
        path: String,
        /// The version it must have.
        #[arg(long, default_value_t = ANY_VERSION, allow_negative_numbers = true)]
        version: Version,
    },
    /// Print every change of a node until Ctrl-C.
    Watch {
        /// The path.
        path: String,
    },
}

fn print_stat(stat: &Stat) {
    println!("cZxid = {:#x}", stat.czxid);
    println!("ctime = {}", stat.ctime);
    println!("mZxid = {:#x}", stat.mzxid);
    println!("mtime = {}", stat.mtime);
    println!("pZxid = {:#x}", stat.pzxid);
    println!("cversion = {}", stat.cversion);
    println!("dataVersion = {}", stat.version);
    println!("ephemeralOwner = {:#x}", stat.ephemeral_owner);
    println!("dataLength = {}", stat.data_length);
    println!("numChildren = {}", stat.num_children);
}

/// Resolves `host:port,host:port,...`, a coordinator's servers.
pub(crate) fn resolve_servers(list: &str) -> Result<Vec<SocketAddr>> {
    let mut servers = Vec::new();
    for addr in list.split(',').filter(|s| !s.is_empty()) {
        let resolved = addr
            .to_socket_addrs()
            .map_err(|e| format!("bad server {addr:?}: {e}"))?
            .next()
            .ok_or_else(|| format!("cannot resolve {addr}"))?;
        servers.push(resolved);
    }
    if servers.is_empty() {
        return Err("no coordinator server given".into());
    }
    Ok(servers)
}

/// Runs one `kfs zk` command.
pub(crate) async fn zk(args: ZkArgs) -> Result<()> {
    let servers = resolve_servers(&args.server)?;
    // As ZooKeeper's client: ping when idle for a third of the timeout,
    // and give up on a silent server well before the session would expire.
    let timeout = args.session_timeout;
    let config = ClientConfig {
        session_timeout_ms: timeout,
        request_timeout_ms: (timeout * 2 / 3).min(3_000),
        ping_interval_ms: timeout / 3,
    };
    let mut zk = Coordinator::connect(&servers, config)
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", args.server))?;
    // Reads see everything committed before the command started.
    zk.sync().await?;
    let result = match args.command {
        ZkCommand::Create {
            ephemeral,
            sequential,
            path,
            data,
        } => {
            let created = zk
                .create(&path, data.as_bytes(), ephemeral, sequential)
                .await?;
            println!("Created {created}");
            if ephemeral {
                // An ephemeral node lives as long as the session, as in
                // ZooKeeper's shell: hold it until asked to stop. (A real
                // shell would also notice the session expiring.)
                std::io::stdout().flush()?;
                signal::stop().await;
            }
            Ok(())
        }
        ZkCommand::Get { path } => {
            let (data, _) = zk.get(&path, false).await?;
            println!("{}", String::from_utf8_lossy(&data));
            Ok(())
        }
        ZkCommand::Set {
            path,
            data,
            version,
        } => {
            let stat = zk.set(&path, data.as_bytes(), version).await?;
            print_stat(&stat);
            Ok(())
        }
        ZkCommand::Ls { path } => {
            let children = zk.children(&path, false).await?;
            println!("[{}]", children.join(", "));
            Ok(())
        }
        ZkCommand::Stat { path } => match zk.exists(&path, false).await? {
            Some(stat) => {
                print_stat(&stat);
                Ok(())
            }
            None => Err(format!("NoNode: no node {path}").into()),
        },
        ZkCommand::Delete { path, version } => zk.delete(&path, version).await.map_err(Into::into),
        ZkCommand::Watch { path } => watch(&mut zk, &path).await,
    };
    zk.close().await;
    result
}

/// Prints the node's data, then each change to it, until a signal.
async fn watch(zk: &mut Coordinator, path: &str) -> Result<()> {
    let mut events = zk.watches().ok_or("the watch channel was taken already")?;
    let stop = signal::stop();
    tokio::pin!(stop);
    loop {
        // Each read sets the next watch: they are one-shot.
        match zk.exists(path, true).await? {
            Some(_) => {
                let (data, stat) = zk.get(path, true).await?;
                println!(
                    "{path} version {}: {}",
                    stat.version,
                    String::from_utf8_lossy(&data)
                );
            }
            None => println!("{path} does not exist"),
        }
        std::io::stdout().flush()?;
        tokio::select! {
            _ = &mut stop => return Ok(()),
            event = events.recv() => match event {
                Some(change) => println!("WatchedEvent {change:?}"),
                None => return Err("the session ended".into()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ensemble_is_parsed_from_zookeeper_style_entries() {
        let members = parse_ensemble("1=127.0.0.1:2181:2881,2=127.0.0.1:2182:2882").unwrap();
        assert_eq!(members.len(), 2);
        assert_eq!(members[&2].client.port(), 2182);
        assert_eq!(members[&2].peer.port(), 2882);
        for bad in ["1=127.0.0.1:2181", "x=127.0.0.1:1:2", "1=h:1:2,1=h:3:4"] {
            assert!(parse_ensemble(bad).is_err(), "{bad}");
        }
    }
}
