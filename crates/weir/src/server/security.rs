//! `weir server`'s listener and TLS settings, with Kafka's names: `listeners`,
//! `advertised.listeners`, `listener.security.protocol.map`, `inter.broker.listener.name`,
//! `controller.listener.names`, and `ssl.*`.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};
use weir_broker::security::sasl::Mechanism;
use weir_broker::security::{
    parse_listeners, tls, ClientAuth, ListenerSettings, Listeners, PrincipalRules, SaslSettings,
    SecurityProtocol, TlsSettings,
};
use weir_broker::BrokerConfig;
use weir_meta::scram::ScramMechanism;

use super::settings::Settings;

/// Setting names read here, for the file's list of known settings.
pub(super) const KEYS: &[&str] = &[
    "listener.security.protocol.map",
    "inter.broker.listener.name",
    "controller.listener.names",
    "ssl.keystore.type",
    "ssl.keystore.location",
    "ssl.truststore.type",
    "ssl.truststore.location",
    "ssl.client.auth",
    "ssl.principal.mapping.rules",
    "sasl.enabled.mechanisms",
    "connection.failed.authentication.delay.ms",
];

/// Reads the listeners into `config`. `listeners` and `advertised` come from flags or the file.
pub(super) fn listeners(
    s: &Settings,
    config: &mut BrokerConfig,
    listeners: Option<&str>,
    advertised: Option<&str>,
    broker_role: bool,
) -> Result<()> {
    let map = s.pick::<String>(None, "listener.security.protocol.map")?;
    let inter = s.pick::<String>(None, "inter.broker.listener.name")?;
    let controller_names = s.pick::<String>(None, "controller.listener.names")?;
    let Listeners {
        broker,
        controller,
        inter_broker,
    } = parse_listeners(&ListenerSettings {
        listeners: listeners.unwrap_or("PLAINTEXT://127.0.0.1:9092"),
        advertised_listeners: advertised,
        security_protocol_map: map.as_deref(),
        inter_broker_listener_name: inter.as_deref(),
        controller_listener_names: controller_names.as_deref(),
    })
    .map_err(|e| anyhow!(e))?;
    if let Some(c) = &controller {
        if c.protocol != SecurityProtocol::Plaintext {
            bail!(
                "listeners: the controller listener '{}' uses {}; the metadata quorum speaks PLAINTEXT only so far",
                c.name,
                c.protocol.name()
            );
        }
    }
    if broker.is_empty() && broker_role {
        bail!("listeners has no listener for the broker role (only controller listeners)");
    }
    config.listeners = broker;
    config.controller_listener = controller.map(|c| c.addr);
    config.inter_broker_listener = inter_broker;
    Ok(())
}

/// Reads the `ssl.*` settings into `config`, and checks them (reading the files) when a
/// listener uses TLS, so a bad file stops the start with one line.
pub(super) fn tls_settings(s: &Settings, config: &mut BrokerConfig) -> Result<()> {
    for key in ["ssl.keystore.type", "ssl.truststore.type"] {
        if let Some(kind) = s.pick::<String>(None, key)? {
            if !kind.eq_ignore_ascii_case("PEM") {
                bail!("{key}: only PEM is supported, not {kind}");
            }
        }
    }
    let client_auth = match s.pick::<String>(None, "ssl.client.auth")? {
        Some(v) => ClientAuth::parse(&v)
            .ok_or_else(|| anyhow!("ssl.client.auth: '{v}' is not required, requested or none"))?,
        None => ClientAuth::None,
    };
    let principal_rules = match s.pick::<String>(None, "ssl.principal.mapping.rules")? {
        Some(rules) => PrincipalRules::parse(&rules).map_err(|e| anyhow!(e))?,
        None => PrincipalRules::default(),
    };
    config.tls = TlsSettings {
        keystore: s.pick::<PathBuf>(None, "ssl.keystore.location")?,
        truststore: s.pick::<PathBuf>(None, "ssl.truststore.location")?,
        client_auth,
        principal_rules,
    };
    if config.listeners.iter().any(|l| l.protocol.tls()) {
        tls::server_config(&config.tls).map_err(|e| anyhow!(e))?;
    }
    Ok(())
}

/// Reads the `sasl.*` settings and the `--add-scram` credentials into `config`.
pub(super) fn sasl_settings(
    s: &Settings,
    config: &mut BrokerConfig,
    add_scram: &[String],
) -> Result<()> {
    let mut sasl = SaslSettings::default();
    if let Some(list) = s.pick::<String>(None, "sasl.enabled.mechanisms")? {
        sasl.mechanisms = list
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(|m| {
                Mechanism::from_name(m).ok_or_else(|| {
                    anyhow!("sasl.enabled.mechanisms: '{m}' is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
                })
            })
            .collect::<Result<_>>()?;
        if sasl.mechanisms.is_empty() {
            bail!("sasl.enabled.mechanisms is empty");
        }
    }
    if let Some(ms) = s.pick::<u64>(None, "connection.failed.authentication.delay.ms")? {
        sasl.failed_authentication_delay_ms = ms;
    }
    for spec in add_scram {
        sasl.initial_credentials.push(parse_add_scram(spec)?);
    }
    config.sasl = sasl;
    Ok(())
}

/// Parses `kafka-storage format`'s `--add-scram` value: `SCRAM-SHA-256=[name=alice,password=secret]`
/// (a value may be double-quoted to hold commas or brackets).
pub(super) fn parse_add_scram(spec: &str) -> Result<(String, ScramMechanism, String)> {
    // The password never reaches an error message: only the mechanism part is quoted.
    let shown = spec.split_once('=').map_or(spec, |(m, _)| m);
    let bad = |why: &str| {
        anyhow!("--add-scram '{shown}=[...]': {why} (expected SCRAM-SHA-256=[name=NAME,password=PASSWORD])")
    };
    let (mechanism, rest) = spec.split_once('=').ok_or_else(|| bad("no mechanism"))?;
    let m = ScramMechanism::from_name(mechanism).ok_or_else(|| bad("unknown mechanism"))?;
    let inner = rest
        .trim()
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .ok_or_else(|| bad("the settings are not in [...]"))?;
    let (mut name, mut password) = (None, None);
    let mut rest = inner;
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once('=')
            .ok_or_else(|| bad("a setting is not KEY=VALUE"))?;
        let (value, after) = match after.strip_prefix('"') {
            Some(quoted) => {
                let (v, a) = quoted
                    .split_once('"')
                    .ok_or_else(|| bad("an unclosed quote"))?;
                (v, a.strip_prefix(',').unwrap_or(a))
            }
            None => after.split_once(',').unwrap_or((after, "")),
        };
        match key.trim() {
            "name" => name = Some(value.to_string()),
            "password" => password = Some(value.to_string()),
            other => return Err(bad(&format!("unknown setting '{other}'"))),
        }
        rest = after;
    }
    let name = name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| bad("no name"))?;
    let password = password
        .filter(|p| !p.is_empty())
        .ok_or_else(|| bad("no password"))?;
    Ok((name, m, password))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_scram_takes_kafkas_format() {
        let (n, m, p) =
            parse_add_scram("SCRAM-SHA-256=[name=admin,password=admin-secret]").unwrap();
        assert_eq!(
            (n.as_str(), m, p.as_str()),
            ("admin", ScramMechanism::Sha256, "admin-secret")
        );
        let (_, m, p) = parse_add_scram("SCRAM-SHA-512=[name=a,password=\"x,y]z\"]").unwrap();
        assert_eq!((m, p.as_str()), (ScramMechanism::Sha512, "x,y]z"));
        let e = parse_add_scram("SCRAM-SHA-256=[name=a,password=hunter2,salt=x]").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        for bad in [
            "SCRAM-SHA-1=[name=a,password=b]",
            "SCRAM-SHA-256=name=a,password=b",
            "SCRAM-SHA-256=[name=a]",
            "SCRAM-SHA-256=[password=b]",
            "SCRAM-SHA-256=[name=a,password=b,salt=c]",
            "SCRAM-SHA-256=[name=a,password=\"b]",
        ] {
            assert!(parse_add_scram(bad).is_err(), "{bad}");
        }
    }
}
