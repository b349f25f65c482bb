//! Parsing `weir server`'s settings: the TOML file, voters, roles, and picking each
//! setting from a flag (or variable) before the file.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};

/// Settings from the TOML file, as strings by Kafka name.
pub(super) fn read_file(path: &PathBuf) -> Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("config file {} is not valid TOML", path.display()))?;
    let mut out = BTreeMap::new();
    for (key, value) in table {
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Float(f) => f.to_string(),
            other => bail!(
                "config file {}: '{key}' has an unsupported value {other}",
                path.display()
            ),
        };
        out.insert(key, value);
    }
    Ok(out)
}

pub(super) fn resolve(host: &str, port: u16) -> Result<SocketAddr> {
    (host, port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve host '{host}'"))?
        .next()
        .ok_or_else(|| anyhow!("host '{host}' has no address"))
}

/// This node's `process.roles`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Roles {
    pub broker: bool,
    pub controller: bool,
}

/// Parses `process.roles`: `broker`, `controller`, or both, comma-separated.
pub(super) fn parse_roles(s: &str) -> Result<Roles> {
    let mut roles = Roles {
        broker: false,
        controller: false,
    };
    for role in s.split(',').map(str::trim) {
        match role.to_ascii_lowercase().as_str() {
            "broker" => roles.broker = true,
            "controller" => roles.controller = true,
            other => bail!("process.roles: unknown role '{other}' (broker, controller or both)"),
        }
    }
    Ok(roles)
}

/// Parses `controller.quorum.voters`: `ID@HOST:PORT` entries separated by commas.
pub(super) fn parse_voters(s: &str) -> Result<BTreeMap<u64, String>> {
    let mut out = BTreeMap::new();
    for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (id, addr) = entry
            .split_once('@')
            .ok_or_else(|| anyhow!("controller.quorum.voters: '{entry}' is not ID@HOST:PORT"))?;
        let id: u64 = id
            .parse()
            .map_err(|_| anyhow!("controller.quorum.voters: '{entry}' has a bad id"))?;
        let (host, port) = split_host_port(entry, addr)?;
        let addr = resolve(&host, port)?;
        if out.insert(id, addr.to_string()).is_some() {
            bail!("controller.quorum.voters: voter {id} is listed twice");
        }
    }
    if out.is_empty() {
        bail!("controller.quorum.voters is empty");
    }
    Ok(out)
}

pub(super) fn split_host_port(whole: &str, addr: &str) -> Result<(String, u16)> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| anyhow!("'{whole}' has no port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| anyhow!("'{whole}' has a bad port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    Ok((host.to_string(), port))
}

pub(super) struct Settings {
    pub(super) file: BTreeMap<String, String>,
}

impl Settings {
    /// The flag or variable if given, else the file's value, parsed.
    pub(super) fn pick<T: std::str::FromStr>(
        &self,
        given: Option<T>,
        name: &str,
    ) -> Result<Option<T>> {
        if given.is_some() {
            return Ok(given);
        }
        match self.file.get(name) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| anyhow!("config file: '{name}' has a bad value '{v}'")),
        }
    }
}

pub(super) const KNOWN_KEYS: &[&str] = &[
    "node.id",
    "broker.id",
    "listeners",
    "advertised.listeners",
    "log.dirs",
    "log.max.open.files",
    "http.listeners",
    "console.writes.enable",
    "log.dir",
    "num.partitions",
    "default.replication.factor",
    "auto.create.topics.enable",
    "socket.request.max.bytes",
    "max.connections",
    "max.connections.per.ip",
    "connections.max.idle.ms",
    "queued.max.request.bytes",
    "log.retention.check.interval.ms",
    "broker.rack",
    "controller.quorum.voters",
    "process.roles",
    "broker.heartbeat.interval.ms",
    "broker.session.timeout.ms",
    "replica.lag.time.max.ms",
    "replica.fetch.wait.max.ms",
    "replica.fetch.max.bytes",
    "unclean.leader.election.enable",
    "log.write.caching",
    "log.retention.ms",
    "log.retention.hours",
    "log.retention.bytes",
    "log.segment.bytes",
    "log.roll.ms",
    "message.max.bytes",
    "log.flush.interval.messages",
    "log.flush.interval.ms",
    "log.cleanup.policy",
    "min.insync.replicas",
    "log.message.timestamp.type",
    "log.cleaner.backoff.ms",
    "group.initial.rebalance.delay.ms",
    "group.min.session.timeout.ms",
    "group.max.session.timeout.ms",
    "group.consumer.session.timeout.ms",
    "group.consumer.heartbeat.interval.ms",
    "group.consumer.max.size",
    "group.consumer.assignors",
    "offsets.topic.num.partitions",
    "offsets.topic.replication.factor",
    "offsets.retention.minutes",
    "transaction.state.log.num.partitions",
    "transaction.state.log.replication.factor",
    "transaction.state.log.min.isr",
    "transaction.max.timeout.ms",
    "transaction.abort.timed.out.transaction.cleanup.interval.ms",
    "transaction.partition.verification.enable",
];

/// `http.listeners`: `http://HOST:PORT,...` (the scheme may be left out); empty for none.
pub(super) fn parse_http_listeners(value: &str) -> Result<Vec<SocketAddr>> {
    let mut out = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (scheme, rest) = match entry.split_once("://") {
            Some((scheme, rest)) => (scheme, rest),
            None => ("http", entry),
        };
        if !scheme.eq_ignore_ascii_case("http") {
            bail!("http.listeners: '{entry}' is not http://HOST:PORT (only plain HTTP is served)");
        }
        let addr = rest
            .trim_end_matches('/')
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| anyhow!("http.listeners: '{entry}' is not http://HOST:PORT"))?;
        out.push(addr);
    }
    Ok(out)
}

#[cfg(test)]
mod http_tests {
    use super::parse_http_listeners;

    #[test]
    fn http_listeners_take_addresses_with_or_without_the_scheme() {
        let a = parse_http_listeners("http://127.0.0.1:8090, 127.0.0.2:1").unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].to_string(), "127.0.0.1:8090");
        assert_eq!(a[1].to_string(), "127.0.0.2:1");
        assert!(parse_http_listeners("").unwrap().is_empty());
        assert!(parse_http_listeners("https://127.0.0.1:1").is_err());
        assert!(parse_http_listeners("http://127.0.0.1").is_err());
        assert!(parse_http_listeners("http://127.0.0.1:99999").is_err());
    }
}
