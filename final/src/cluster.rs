//! `kfs cluster`: a whole local cluster as separate processes (`up`), and
//! what it is doing (`status`); and the calls the other tools make to a
//! cluster's controller.
//!
//! `kfs cluster up` starts the coordinator servers and the brokers as
//! child processes of its own (each `kfs coordinator` or `kfs broker`,
//! with its log in the data directory), prints the bootstrap servers, and
//! writes `cluster.txt` there: one line per process, with its process id,
//! for `kfs cluster status` and for whoever wants to `kill -9` one to
//! watch the cluster heal. A child that dies is reported, not replaced
//! (it prints the command line that starts it again). On Ctrl-C (or
//! SIGTERM) it stops the brokers, then the coordinators, each with
//! SIGTERM, so each stops cleanly.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use ch04_network::{Client, ErrorCode};
use ch06_replication::client::ClusterConfig;
use ch08_cluster::protocol::{
    ClusterApi, ClusterDescription, DeleteTopicRequest, ElectLeadersResponse,
};
use ch08_cluster::service;
use clap::{Args, Subcommand};
use tokio::process::{Child, Command};

use crate::{Bootstrap, REQUEST_TIMEOUT, Result, signal};

/// `kfs cluster`'s subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum ClusterCommand {
    /// Start a local cluster (coordinator servers and brokers, each a
    /// process) until Ctrl-C.
    Up(UpArgs),
    /// Show the cluster's processes, its controller and every
    /// partition's leader and ISR.
    Status {
        /// The directory `kfs cluster up` was given.
        #[arg(long, default_value = "./cluster")]
        data_dir: PathBuf,
    },
    /// Move leadership back to each partition's preferred replica (the
    /// first of its replicas) where it is alive and in sync
    /// (kafka-leader-election --election-type preferred).
    ElectLeaders {
        #[command(flatten)]
        bootstrap: Bootstrap,
    },
}

/// `kfs cluster up`'s flags.
#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// How many brokers.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=64))]
    brokers: u32,
    /// How many coordinator servers.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=9))]
    coordinators: u32,
    /// Where every process keeps its data and its log.
    #[arg(long, default_value = "./cluster")]
    data_dir: PathBuf,
    /// The first broker's port; the others count up from it.
    #[arg(long, default_value_t = 9092)]
    broker_port: u16,
    /// The first coordinator server's client port; the others count up.
    #[arg(long, default_value_t = 2181)]
    coordinator_port: u16,
    /// The first coordinator server's peer port; the others count up.
    #[arg(long, default_value_t = 2881)]
    peer_port: u16,
    /// `min.insync.replicas` for every broker.
    #[arg(long, default_value_t = 1)]
    min_insync_replicas: usize,
    /// `zookeeper.session.timeout.ms` for every broker.
    #[arg(long, default_value_t = 6_000, value_name = "MS")]
    session_timeout_ms: u64,
}

/// Runs one `kfs cluster` subcommand.
pub(crate) async fn run(command: ClusterCommand) -> Result<()> {
    match command {
        ClusterCommand::Up(args) => up(args).await,
        ClusterCommand::Status { data_dir } => status(&data_dir).await,
        ClusterCommand::ElectLeaders { bootstrap } => {
            let cluster = describe(&bootstrap).await?;
            let client = Client::connect(&cluster.controller.address, REQUEST_TIMEOUT).await?;
            let elected: ElectLeadersResponse = client.call(ClusterApi::ElectLeaders, &()).await?;
            if elected.moved.is_empty() {
                println!("Every partition is led by its preferred replica, or it cannot be.");
            }
            for tp in elected.moved {
                println!("Successfully completed leader election for partition {tp}.");
            }
            Ok(())
        }
    }
}

/// One process of a local cluster.
struct Process {
    /// `coordinator` or `broker`.
    role: &'static str,
    id: u32,
    address: String,
    /// Its command line, for a person to start it again.
    command: String,
    child: Child,
}

fn port(base: u16, offset: u32) -> Result<u16> {
    u16::try_from(u32::from(base) + offset)
        .map_err(|_| format!("port {base} + {offset} is beyond 65535").into())
}

async fn up(args: UpArgs) -> Result<()> {
    let dir = &args.data_dir;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let kfs = std::env::current_exe()?;
    let mut ensemble = Vec::new();
    let mut clients = Vec::new();
    for i in 0..args.coordinators {
        let client = format!("127.0.0.1:{}", port(args.coordinator_port, i)?);
        let peer = port(args.peer_port, i)?;
        ensemble.push(format!("{}={client}:{peer}", i + 1));
        clients.push(client);
    }
    let mut processes = Vec::new();
    for (i, client) in clients.iter().enumerate() {
        let id = i as u32 + 1;
        let mut command = Command::new(&kfs);
        command
            .arg("coordinator")
            .args(["--id", &id.to_string()])
            .arg("--data-dir")
            .arg(dir.join(format!("coordinator-{id}")))
            .args(["--ensemble", &ensemble.join(",")]);
        processes.push(spawn("coordinator", id, client.clone(), command, dir)?);
    }
    let mut bootstrap = Vec::new();
    for i in 0..args.brokers {
        let id = i + 1;
        let address = format!("127.0.0.1:{}", port(args.broker_port, i)?);
        let mut command = Command::new(&kfs);
        command
            .arg("broker")
            .args(["--id", &id.to_string()])
            .args(["--coordinator", &clients.join(",")])
            .args(["--listen", &address])
            .arg("--data-dir")
            .arg(dir.join(format!("broker-{id}")))
            .args([
                "--min-insync-replicas",
                &args.min_insync_replicas.to_string(),
            ])
            .args(["--session-timeout-ms", &args.session_timeout_ms.to_string()])
            // Kafka's default of 3, or every broker of a smaller cluster.
            .args([
                "--offsets-topic-replication-factor",
                &args.brokers.clamp(1, 3).to_string(),
            ]);
        processes.push(spawn("broker", id, address.clone(), command, dir)?);
        bootstrap.push(address);
    }
    let table: String = processes
        .iter()
        .map(|p| {
            let pid = p.child.id().unwrap_or(0);
            format!("{} {} {} {}\n", p.role, p.id, pid, p.address)
        })
        .collect();
    std::fs::write(dir.join("cluster.txt"), table)?;
    println!(
        "kfs cluster up: {} coordinator servers ({}), {} brokers",
        args.coordinators,
        clients.join(","),
        args.brokers
    );
    println!("bootstrap servers: {}", bootstrap.join(","));
    println!("logs and data in {}; Ctrl-C stops them all", dir.display());

    supervise(&mut processes).await;
    // Brokers first, so that each leaves a coordinator that still runs.
    for role in ["broker", "coordinator"] {
        let stopping: Vec<&mut Process> = processes.iter_mut().filter(|p| p.role == role).collect();
        stop_all(stopping).await;
    }
    println!("stopped");
    Ok(())
}

/// Starts one process, its output to `<dir>/<role>-<id>.log`.
fn spawn(
    role: &'static str,
    id: u32,
    address: String,
    mut command: Command,
    dir: &Path,
) -> Result<Process> {
    let log = std::fs::File::create(dir.join(format!("{role}-{id}.log")))?;
    command
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let args = command.as_std().get_args();
    let args = args.map(|a| a.to_string_lossy().into_owned());
    let line = std::iter::once("kfs".to_string())
        .chain(args)
        .collect::<Vec<_>>();
    let child = command
        .spawn()
        .map_err(|e| format!("cannot start {role} {id}: {e}"))?;
    Ok(Process {
        role,
        id,
        address,
        command: line.join(" "),
        child,
    })
}

/// Waits for Ctrl-C or SIGTERM, reporting each child that exits meanwhile.
async fn supervise(processes: &mut [Process]) {
    let mut exited = vec![false; processes.len()];
    let stop = signal::stop();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        for (process, exited) in processes.iter_mut().zip(exited.iter_mut()) {
            if *exited {
                continue;
            }
            if let Ok(Some(status)) = process.child.try_wait() {
                *exited = true;
                println!(
                    "{} {} ({}) exited: {status}",
                    process.role, process.id, process.address
                );
                println!(
                    "  to start it again (by hand: Ctrl-C here will not stop it): {}",
                    process.command
                );
            }
        }
    }
}

/// Sends SIGTERM to each process still running and waits for them (a
/// process that has not stopped 30 s later is killed).
async fn stop_all(processes: Vec<&mut Process>) {
    for process in &processes {
        if let Some(pid) = process.child.id() {
            // A process that has just exited cannot be signalled: its wait
            // below says so.
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
    }
    for process in processes {
        let waited = tokio::time::timeout(Duration::from_secs(30), process.child.wait()).await;
        if waited.is_err() {
            // Killed as a last resort; its data recovers at the next start.
            let _ = process.child.kill().await;
        }
    }
}

/// `kfs cluster status`: the processes `cluster.txt` lists, whether each
/// is running, then the controller's view of the cluster.
async fn status(dir: &Path) -> Result<()> {
    let path = dir.join("cluster.txt");
    let table = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "cannot read {} (was `kfs cluster up` run here?): {e}",
            path.display()
        )
    })?;
    println!(
        "{:<12} {:>3} {:>8}  {:<22} STATE",
        "PROCESS", "ID", "PID", "ADDRESS"
    );
    let mut brokers = Vec::new();
    for line in table.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [role, id, pid, address] = fields.as_slice() else {
            return Err(format!("{}: bad line {line:?}", path.display()).into());
        };
        // A process id names a running process while /proc has it (and it
        // is not a zombie, dead and waiting for its parent).
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = match stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
        {
            None | Some('Z') | Some('X') => "down",
            Some('T') => "stopped",
            Some(_) => "up",
        };
        println!("{role:<12} {id:>3} {pid:>8}  {address:<22} {state}");
        if *role == "broker" && state == "up" {
            brokers.push(address.to_string());
        }
    }
    let bootstrap = Bootstrap {
        bootstrap_server: brokers.join(","),
    };
    if brokers.is_empty() {
        return Err("no broker is up".into());
    }
    let cluster = describe(&bootstrap).await?;
    println!();
    println!(
        "controller: broker {} at {} (epoch {})",
        cluster.controller.broker_id, cluster.controller.address, cluster.controller_epoch
    );
    let alive: Vec<String> = cluster
        .brokers
        .iter()
        .map(|(id, _)| id.to_string())
        .collect();
    println!("live brokers: {}", alive.join(","));
    if !cluster.partitions.is_empty() {
        println!();
        println!(
            "{:<30} {:<7} {:<9} {:<12} ISR",
            "PARTITION", "LEADER", "EPOCH", "REPLICAS"
        );
    }
    for (tp, state) in &cluster.partitions {
        let leader = state.leader.map_or("none".to_string(), |l| l.to_string());
        let list = |ids: &[u32]| ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        println!(
            "{:<30} {leader:<7} {:<9} {:<12} {}",
            tp.to_string(),
            state.leader_epoch,
            list(&state.replicas),
            list(&state.isr)
        );
    }
    Ok(())
}

/// How the tools' cluster client waits and retries.
pub(crate) fn client_config() -> ClusterConfig {
    ClusterConfig {
        request_timeout: REQUEST_TIMEOUT,
        retry_backoff: Duration::from_millis(100),
        delivery_timeout: Duration::from_secs(60),
    }
}

/// The cluster as its controller has it stored, asked of the bootstrap
/// brokers in turn. A cluster still electing its controller
/// (`NOT_CONTROLLER`) is asked again for up to 10 s; a broker that cannot
/// be reached is an error at once.
pub(crate) async fn describe(bootstrap: &Bootstrap) -> Result<ClusterDescription> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match service::describe_cluster(&bootstrap.servers(), REQUEST_TIMEOUT).await {
            Ok(description) => return Ok(description),
            Err(e)
                if e.code() == Some(ErrorCode::NotController)
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(format!("cannot describe the cluster: {e}").into()),
        }
    }
}

/// Deletes a replicated topic through the controller.
pub(crate) async fn delete_topic(cluster: &ClusterDescription, name: &str) -> Result<()> {
    let client = Client::connect(&cluster.controller.address, REQUEST_TIMEOUT).await?;
    let request = DeleteTopicRequest {
        name: name.to_string(),
    };
    match client
        .call::<_, ()>(ClusterApi::DeleteTopic, &request)
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if e.code() == Some(ErrorCode::NotController) => Err(format!(
            "{}: the controller moved; try again",
            cluster.controller.address
        )
        .into()),
        Err(e) => Err(e.into()),
    }
}
