//! `kfs broker --config FILE`: a broker's settings in Kafka's
//! `server.properties` format and names.
//!
//! ```text
//! # comments and blank lines are ignored
//! broker.id=1
//! listeners=PLAINTEXT://127.0.0.1:9092
//! log.dirs=./data-1
//! zookeeper.connect=127.0.0.1:2181,127.0.0.1:2182,127.0.0.1:2183
//! min.insync.replicas=2
//! offsets.topic.replication.factor=3
//! ```
//!
//! A key this broker does not know is reported and ignored, as Kafka
//! warns of a configuration that "was supplied but isn't a known config".

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The settings a properties file may give; `None` where it is silent.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Properties {
    /// `broker.id`.
    pub(crate) broker_id: Option<u32>,
    /// `listeners`: the one listener's address (`PLAINTEXT://` is
    /// accepted and dropped; there is one plain listener).
    pub(crate) listen: Option<SocketAddr>,
    /// `advertised.listeners`: the address others are told (one).
    pub(crate) advertise: Option<SocketAddr>,
    /// `log.dirs` (or `log.dir`): one directory.
    pub(crate) data_dir: Option<PathBuf>,
    /// `zookeeper.connect`: the coordinator servers.
    pub(crate) coordinator: Option<String>,
    /// `zookeeper.session.timeout.ms`.
    pub(crate) session_timeout_ms: Option<u64>,
    /// `min.insync.replicas`.
    pub(crate) min_insync_replicas: Option<usize>,
    /// `default.replication.factor`.
    pub(crate) default_replication_factor: Option<u32>,
    /// `offsets.topic.replication.factor`.
    pub(crate) offsets_replication_factor: Option<u32>,
    /// `unclean.leader.election.enable`.
    pub(crate) unclean_leader_election: Option<bool>,
    /// Keys that were ignored, for a warning.
    pub(crate) unknown: Vec<String>,
}

/// Reads and parses `path`.
pub(crate) fn load(path: &Path) -> Result<Properties, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Parses the text of a properties file.
pub(crate) fn parse(text: &str) -> Result<Properties, String> {
    let mut properties = Properties::default();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let at = |e: String| format!("line {}: {e}", number + 1);
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| at(format!("expected key=value, got {line:?}")))?;
        let (key, value) = (key.trim(), value.trim());
        let bad = |what: &str| at(format!("{key}: expected {what}, got {value:?}"));
        match key {
            "broker.id" | "node.id" => {
                properties.broker_id = Some(value.parse().map_err(|_| bad("a number"))?);
            }
            "listeners" => {
                if value.contains(',') {
                    return Err(at("one listener only".to_string()));
                }
                let address = value.rsplit_once("://").map_or(value, |(_, a)| a);
                properties.listen = Some(address.parse().map_err(|_| bad("host:port"))?);
            }
            "advertised.listeners" => {
                if value.contains(',') {
                    return Err(at("one advertised listener only".to_string()));
                }
                let address = value.rsplit_once("://").map_or(value, |(_, a)| a);
                properties.advertise = Some(address.parse().map_err(|_| bad("host:port"))?);
            }
            "log.dirs" | "log.dir" => {
                if value.contains(',') {
                    return Err(at(format!("{key}: one directory only")));
                }
                properties.data_dir = Some(PathBuf::from(value));
            }
            "zookeeper.connect" => {
                if value.contains('/') {
                    return Err(at(
                        "zookeeper.connect: a chroot path is not supported".into()
                    ));
                }
                properties.coordinator = Some(value.to_string());
            }
            "zookeeper.session.timeout.ms" => {
                properties.session_timeout_ms =
                    Some(value.parse().map_err(|_| bad("a number of ms"))?);
            }
            "min.insync.replicas" => {
                properties.min_insync_replicas = Some(value.parse().map_err(|_| bad("a number"))?);
            }
            "default.replication.factor" => {
                properties.default_replication_factor =
                    Some(value.parse().map_err(|_| bad("a number"))?);
            }
            "offsets.topic.replication.factor" => {
                properties.offsets_replication_factor =
                    Some(value.parse().map_err(|_| bad("a number"))?);
            }
            "unclean.leader.election.enable" => {
                properties.unclean_leader_election =
                    Some(value.parse().map_err(|_| bad("true or false"))?);
            }
            _ => properties.unknown.push(key.to_string()),
        }
    }
    Ok(properties)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafkas_names_are_read_and_unknown_ones_reported() {
        let text = "# a broker\n\nbroker.id=2\nlisteners=PLAINTEXT://127.0.0.1:9093\n\
                    advertised.listeners=PLAINTEXT://127.0.0.1:19093\n\
                    log.dirs=/tmp/kfs-2\nzookeeper.connect=127.0.0.1:2181,127.0.0.1:2182\n\
                    zookeeper.session.timeout.ms = 6000\nmin.insync.replicas=2\n\
                    default.replication.factor=3\noffsets.topic.replication.factor=2\n\
                    unclean.leader.election.enable=false\n\
                    num.network.threads=3\n";
        let properties = parse(text).unwrap();
        assert_eq!(
            properties,
            Properties {
                broker_id: Some(2),
                listen: Some("127.0.0.1:9093".parse().unwrap()),
                advertise: Some("127.0.0.1:19093".parse().unwrap()),
                data_dir: Some(PathBuf::from("/tmp/kfs-2")),
                coordinator: Some("127.0.0.1:2181,127.0.0.1:2182".into()),
                session_timeout_ms: Some(6000),
                min_insync_replicas: Some(2),
                default_replication_factor: Some(3),
                offsets_replication_factor: Some(2),
                unclean_leader_election: Some(false),
                unknown: vec!["num.network.threads".into()],
            }
        );
    }

    #[test]
    fn bad_lines_are_errors_with_their_line_number() {
        assert_eq!(
            parse("broker.id=one").unwrap_err(),
            "line 1: broker.id: expected a number, got \"one\""
        );
        assert!(parse("\nnot a pair").unwrap_err().starts_with("line 2:"));
        assert!(parse("zookeeper.connect=h:2181/kafka").is_err());
        assert!(parse("listeners=PLAINTEXT://a:1,SSL://b:2").is_err());
    }
}
