//! `weir server`'s listener and TLS settings, with Kafka's names: `listeners`,
//! `advertised.listeners`, `listener.security.protocol.map`, `inter.broker.listener.name`,
//! `controller.listener.names`, and `ssl.*`.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};
use weir_broker::security::{
    parse_listeners, tls, ClientAuth, ListenerSettings, Listeners, PrincipalRules,
    SecurityProtocol, TlsSettings,
};
use weir_broker::BrokerConfig;

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
