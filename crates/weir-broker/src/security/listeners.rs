//! Named listeners with Kafka's settings: `listeners`, `advertised.listeners`,
//! `listener.security.protocol.map`, `inter.broker.listener.name` and
//! `controller.listener.names`.
//!
//! A listener is `NAME://HOST:PORT`. Its name maps to one of the four security protocols; the
//! protocols' own names map to themselves, and `CONTROLLER` to PLAINTEXT, unless the map says
//! otherwise. An empty host binds every interface.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};

/// Kafka's security protocols, with their wire ids (`SecurityProtocol.id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    const ALL: [SecurityProtocol; 4] = [
        SecurityProtocol::Plaintext,
        SecurityProtocol::Ssl,
        SecurityProtocol::SaslPlaintext,
        SecurityProtocol::SaslSsl,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    /// The id Kafka writes in `DescribeCluster` and broker registrations.
    pub fn id(self) -> i16 {
        match self {
            SecurityProtocol::Plaintext => 0,
            SecurityProtocol::Ssl => 1,
            SecurityProtocol::SaslPlaintext => 2,
            SecurityProtocol::SaslSsl => 3,
        }
    }

    pub fn parse(s: &str) -> Option<SecurityProtocol> {
        Self::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s.trim()))
    }

    /// Whether connections are wrapped in TLS.
    pub fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// Whether clients must authenticate with SASL before anything else.
    pub fn sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// One listener clients (or other brokers) connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Upper case, as Kafka compares them.
    pub name: String,
    pub protocol: SecurityProtocol,
    /// Where to bind; port 0 picks a free one.
    pub addr: SocketAddr,
    /// The host as `listeners` names it (clients are told this name, not the address it
    /// resolved to, so certificates naming the host verify); empty for every interface.
    pub host: String,
    /// `advertised.listeners`' host and port for this listener.
    pub advertised: Option<(String, u16)>,
    /// Whether clients are told of this listener: every listener when `advertised.listeners`
    /// is unset, else only those it lists (as Kafka does).
    pub advertise: bool,
}

impl ListenerConfig {
    /// A PLAINTEXT listener named PLAINTEXT.
    pub fn plaintext(addr: SocketAddr) -> ListenerConfig {
        ListenerConfig {
            name: "PLAINTEXT".into(),
            protocol: SecurityProtocol::Plaintext,
            addr,
            host: addr.ip().to_string(),
            advertised: None,
            advertise: true,
        }
    }

    /// The host and port clients are told, given the port the listener was bound to: the
    /// `advertised.listeners` entry, else the host as `listeners` names it, else (every
    /// interface) this machine's host name, as Kafka advertises its canonical host name.
    pub fn advertised_endpoint(&self, bound: SocketAddr) -> (String, u16) {
        if let Some(advertised) = &self.advertised {
            return advertised.clone();
        }
        let wildcard = self.host.is_empty() || bound.ip().is_unspecified();
        let host = if wildcard {
            rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned()
        } else {
            self.host.clone()
        };
        (host, bound.port())
    }
}

/// What the listener settings say, parsed and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listeners {
    /// The broker's listeners, in the order given.
    pub broker: Vec<ListenerConfig>,
    /// The controller's listener (the first named in `controller.listener.names`), if listed.
    pub controller: Option<ListenerConfig>,
    /// `inter.broker.listener.name`: the listener followers fetch from.
    pub inter_broker: Option<String>,
    /// The protocol `listener.security.protocol.map` gives the controller listener, whether or
    /// not this node binds it (a broker-only node speaks it to the voters).
    pub controller_protocol: Option<SecurityProtocol>,
}

/// The raw settings, as strings with Kafka's names.
#[derive(Debug, Default, Clone)]
pub struct ListenerSettings<'a> {
    pub listeners: &'a str,
    pub advertised_listeners: Option<&'a str>,
    pub security_protocol_map: Option<&'a str>,
    pub inter_broker_listener_name: Option<&'a str>,
    pub controller_listener_names: Option<&'a str>,
}

/// Parses and checks the listener settings. Errors are one line, naming the setting.
pub fn parse_listeners(s: &ListenerSettings<'_>) -> Result<Listeners, String> {
    let map = protocol_map(s.security_protocol_map)?;
    let controller_names: Vec<String> = s
        .controller_listener_names
        .unwrap_or("CONTROLLER")
        .split(',')
        .map(|n| n.trim().to_ascii_uppercase())
        .filter(|n| !n.is_empty())
        .collect();
    let mut broker = Vec::new();
    let mut controller = None;
    for (entry, name, addr) in entries(s.listeners) {
        if name.is_empty() {
            return Err(format!("listeners: '{entry}' has no listener name"));
        }
        let protocol = *map.get(&name).ok_or_else(|| {
            format!(
                "listeners: '{name}' has no security protocol (add {name}:PROTOCOL to listener.security.protocol.map)"
            )
        })?;
        let (host, port) = split_host_port(entry, addr)?;
        let bind = if host.is_empty() {
            "0.0.0.0"
        } else {
            host.as_str()
        };
        let listener = ListenerConfig {
            addr: resolve(bind, port)?,
            name,
            protocol,
            host,
            advertised: None,
            advertise: true,
        };
        let all = broker.iter().chain(controller.iter());
        for other in all {
            let other: &ListenerConfig = other;
            if other.name == listener.name {
                return Err(format!("listeners: '{}' is listed twice", listener.name));
            }
            if port != 0 && other.addr == listener.addr {
                return Err(format!(
                    "listeners: '{}' and '{}' both use {}",
                    other.name, listener.name, listener.addr
                ));
            }
        }
        if controller_names.contains(&listener.name) {
            if controller.is_none() {
                controller = Some(listener);
            }
        } else {
            broker.push(listener);
        }
    }
    if let Some(advertised) = s.advertised_listeners {
        for l in &mut broker {
            l.advertise = false;
        }
        for (entry, name, addr) in entries(advertised) {
            if controller_names.contains(&name) {
                return Err(format!(
                    "advertised.listeners: '{name}' is a controller listener, which is not advertised"
                ));
            }
            let listener = broker
                .iter_mut()
                .find(|l| l.name == name)
                .ok_or_else(|| format!("advertised.listeners: '{name}' is not in listeners"))?;
            let (host, port) = split_host_port(entry, addr)?;
            if host.is_empty() || host == "0.0.0.0" {
                return Err(format!(
                    "advertised.listeners: '{entry}' names no host clients can reach"
                ));
            }
            listener.advertised = Some((host, port));
            listener.advertise = true;
        }
    }
    let inter_broker = match s.inter_broker_listener_name {
        Some(name) => {
            let name = name.trim().to_ascii_uppercase();
            if !broker.iter().any(|l| l.name == name) {
                return Err(format!(
                    "inter.broker.listener.name: '{name}' is not a broker listener in listeners"
                ));
            }
            Some(name)
        }
        // Kafka's default is the PLAINTEXT listener; with none, the first one.
        None => broker
            .iter()
            .find(|l| l.name == "PLAINTEXT")
            .or(broker.first())
            .map(|l| l.name.clone()),
    };
    if let Some(name) = &inter_broker {
        if broker.iter().any(|l| &l.name == name && !l.advertise) {
            return Err(format!(
                "advertised.listeners: the inter-broker listener '{name}' must be advertised"
            ));
        }
    }
    let controller_protocol = controller_names.first().and_then(|n| map.get(n)).copied();
    Ok(Listeners {
        broker,
        controller,
        inter_broker,
        controller_protocol,
    })
}

/// The entries of a listener list: each whole, its upper-cased name and its `HOST:PORT`. A bare
/// `HOST:PORT` is a PLAINTEXT listener, as before listeners had names.
fn entries(list: &str) -> impl Iterator<Item = (&str, String, &str)> {
    list.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|entry| match entry.split_once("://") {
            Some((name, addr)) => (entry, name.trim().to_ascii_uppercase(), addr),
            None => (entry, "PLAINTEXT".to_string(), entry),
        })
}

/// `listener.security.protocol.map`, over the defaults: each protocol's name maps to itself,
/// and CONTROLLER to PLAINTEXT.
fn protocol_map(setting: Option<&str>) -> Result<BTreeMap<String, SecurityProtocol>, String> {
    let mut map: BTreeMap<String, SecurityProtocol> = SecurityProtocol::ALL
        .into_iter()
        .map(|p| (p.name().to_string(), p))
        .collect();
    map.insert("CONTROLLER".into(), SecurityProtocol::Plaintext);
    for entry in setting
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        let (name, protocol) = entry.split_once(':').ok_or_else(|| {
            format!("listener.security.protocol.map: '{entry}' is not NAME:PROTOCOL")
        })?;
        let protocol = SecurityProtocol::parse(protocol).ok_or_else(|| {
            format!(
                "listener.security.protocol.map: '{protocol}' is not PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
            )
        })?;
        map.insert(name.trim().to_ascii_uppercase(), protocol);
    }
    Ok(map)
}

/// Splits `HOST:PORT` (`[v6]:PORT` too); an empty host (every interface) stays empty.
pub fn split_host_port(whole: &str, addr: &str) -> Result<(String, u16), String> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("'{whole}' has no port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("'{whole}' has a bad port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((host.to_string(), port))
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve host '{host}': {e}"))?
        .next()
        .ok_or_else(|| format!("host '{host}' has no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(listeners: &str) -> Result<Listeners, String> {
        parse_listeners(&ListenerSettings {
            listeners,
            ..ListenerSettings::default()
        })
    }

    #[test]
    fn names_map_to_protocols_and_the_controller_is_apart() {
        let l = parse_listeners(&ListenerSettings {
            listeners: "INTERNAL://127.0.0.1:9092, external://127.0.0.1:9093,CONTROLLER://127.0.0.1:9094,SSL://127.0.0.1:0",
            security_protocol_map: Some("INTERNAL:PLAINTEXT,EXTERNAL:SASL_SSL"),
            advertised_listeners: Some("EXTERNAL://broker.example:19093,INTERNAL://10.0.0.1:9092"),
            inter_broker_listener_name: Some("internal"),
            controller_listener_names: None,
        })
        .expect("valid");
        let names: Vec<_> = l
            .broker
            .iter()
            .map(|l| (l.name.as_str(), l.protocol))
            .collect();
        assert_eq!(
            names,
            [
                ("INTERNAL", SecurityProtocol::Plaintext),
                ("EXTERNAL", SecurityProtocol::SaslSsl),
                ("SSL", SecurityProtocol::Ssl)
            ]
        );
        assert_eq!(l.controller.expect("controller").addr.port(), 9094);
        assert_eq!(l.inter_broker.as_deref(), Some("INTERNAL"));
        assert_eq!(
            l.broker[1].advertised,
            Some(("broker.example".to_string(), 19093))
        );
        assert_eq!(l.broker[0].advertised, Some(("10.0.0.1".to_string(), 9092)));
        // Only the listeners advertised.listeners names are advertised.
        let shown: Vec<bool> = l.broker.iter().map(|l| l.advertise).collect();
        assert_eq!(shown, [true, true, false]);
        // Clients are told the host as written, not the address it resolved to.
        let l = parse("PLAINTEXT://localhost:0").expect("valid");
        let bound: SocketAddr = "127.0.0.1:4321".parse().expect("addr");
        assert_eq!(
            l.broker[0].advertised_endpoint(bound),
            ("localhost".to_string(), 4321)
        );
        let l = parse("PLAINTEXT://:0").expect("valid");
        assert!(l.broker[0].addr.ip().is_unspecified());
        let (host, _) = l.broker[0].advertised_endpoint("0.0.0.0:1".parse().expect("addr"));
        assert!(!host.is_empty() && host != "0.0.0.0", "{host}");
    }

    #[test]
    fn a_bare_address_is_plaintext_and_inter_broker_defaults_to_it() {
        let l = parse("SSL://127.0.0.1:9093,127.0.0.1:9092").expect("valid");
        assert_eq!(l.broker[1].name, "PLAINTEXT");
        assert_eq!(l.inter_broker.as_deref(), Some("PLAINTEXT"));
        let l = parse("SSL://127.0.0.1:9093").expect("valid");
        assert_eq!(l.inter_broker.as_deref(), Some("SSL"));
    }

    #[test]
    fn bad_settings_are_one_line_errors() {
        for (listeners, map, advertised, inter, why) in [
            (
                "FOO://127.0.0.1:1",
                None,
                None,
                None,
                "no security protocol",
            ),
            (
                "PLAINTEXT://127.0.0.1:1,PLAINTEXT://127.0.0.1:2",
                None,
                None,
                None,
                "twice",
            ),
            (
                "PLAINTEXT://127.0.0.1:1,SSL://127.0.0.1:1",
                None,
                None,
                None,
                "both use",
            ),
            ("PLAINTEXT://127.0.0.1", None, None, None, "no port"),
            (
                "A://127.0.0.1:1",
                Some("A:TLS"),
                None,
                None,
                "is not PLAINTEXT",
            ),
            ("A://127.0.0.1:1", Some("A"), None, None, "NAME:PROTOCOL"),
            (
                "PLAINTEXT://127.0.0.1:1",
                None,
                Some("SSL://h:1"),
                None,
                "not in listeners",
            ),
            (
                "PLAINTEXT://127.0.0.1:1",
                None,
                None,
                Some("SSL"),
                "inter.broker",
            ),
            (
                "PLAINTEXT://127.0.0.1:1,CONTROLLER://127.0.0.1:2",
                None,
                Some("CONTROLLER://h:2"),
                None,
                "controller",
            ),
        ] {
            let e = parse_listeners(&ListenerSettings {
                listeners,
                security_protocol_map: map,
                advertised_listeners: advertised,
                inter_broker_listener_name: inter,
                controller_listener_names: None,
            })
            .expect_err(listeners);
            assert!(e.contains(why), "{listeners}: {e}");
            assert!(!e.contains('\n'));
        }
    }
}
