//! `weir server`'s listener and TLS settings, with Kafka's names: `listeners`,
//! `advertised.listeners`, `listener.security.protocol.map`, `inter.broker.listener.name`,
//! `controller.listener.names`, and `ssl.*`.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};
use weir_broker::security::sasl::Mechanism;
use weir_broker::security::{
    parse_listeners, tls, AuthorizerSettings, ClientAuth, ListenerSettings, Listeners,
    PrincipalRules, SaslSettings, SecurityProtocol, TlsSettings, STANDARD_AUTHORIZER,
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
    "connections.max.reauth.ms",
    "authorizer.class.name",
    "super.users",
    "allow.everyone.if.no.acl.found",
    "sasl.mechanism.inter.broker.protocol",
    "sasl.jaas.config",
];

/// Settings named per listener: `listener.name.<listener>.<mechanism>.sasl.jaas.config`.
pub(super) fn known(key: &str) -> bool {
    key.strip_prefix("listener.name.")
        .is_some_and(|rest| rest.ends_with(".sasl.jaas.config"))
}

/// The credentials a broker logs in with on its inter-broker listener, when that listener uses
/// SASL: `sasl.mechanism.inter.broker.protocol` (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; Kafka's
/// default, GSSAPI, is not offered) and the `username` and `password` of the JAAS line
/// `listener.name.<listener>.<mechanism>.sasl.jaas.config`, else `sasl.jaas.config`.
pub(super) fn inter_broker_sasl(s: &Settings, config: &mut BrokerConfig) -> Result<()> {
    let Some(listener) = config.listeners.get(config.inter_broker_index()) else {
        return Ok(());
    };
    if !listener.protocol.sasl() {
        return Ok(());
    }
    let name = listener.name.clone();
    let mechanism = s
        .pick::<String>(None, "sasl.mechanism.inter.broker.protocol")?
        .ok_or_else(|| {
            anyhow!(
                "the inter-broker listener '{name}' uses SASL: set sasl.mechanism.inter.broker.protocol (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512) and its sasl.jaas.config"
            )
        })?;
    let mechanism = weir_client::SaslMechanism::from_name(&mechanism).ok_or_else(|| {
        anyhow!("sasl.mechanism.inter.broker.protocol: '{mechanism}' is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
    })?;
    let per_listener = format!(
        "listener.name.{}.{}.sasl.jaas.config",
        name.to_ascii_lowercase(),
        mechanism.name().to_ascii_lowercase()
    );
    let jaas = match s.pick::<String>(None, &per_listener)? {
        Some(j) => j,
        None => s.pick::<String>(None, "sasl.jaas.config")?.ok_or_else(|| {
            anyhow!("the inter-broker listener '{name}' uses SASL: set {per_listener} (or sasl.jaas.config) with the broker's username and password")
        })?,
    };
    let options = crate::command_config::jaas_options(&jaas);
    let (Some(username), Some(password)) = (options.get("username"), options.get("password"))
    else {
        bail!("{per_listener}: the JAAS line needs username=\"...\" and password=\"...\"");
    };
    config.inter_broker_sasl = Some(weir_client::Sasl {
        mechanism,
        username: username.clone(),
        password: password.clone(),
    });
    Ok(())
}

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
        controller_protocol,
    } = parse_listeners(&ListenerSettings {
        listeners: listeners.unwrap_or("PLAINTEXT://127.0.0.1:9092"),
        advertised_listeners: advertised,
        security_protocol_map: map.as_deref(),
        inter_broker_listener_name: inter.as_deref(),
        controller_listener_names: controller_names.as_deref(),
    })
    .map_err(|e| anyhow!(e))?;
    match controller_protocol {
        None | Some(SecurityProtocol::Plaintext) | Some(SecurityProtocol::Ssl) => {}
        Some(other) => bail!(
            "listener.security.protocol.map: the controller listener uses {}; the metadata quorum speaks PLAINTEXT or SSL (mutual TLS)",
            other.name()
        ),
    }
    config.controller_tls = controller_protocol == Some(SecurityProtocol::Ssl);
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
    if let Some(ms) = s.pick::<u64>(None, "connections.max.reauth.ms")? {
        sasl.max_reauth_ms = ms;
    }
    for spec in add_scram {
        sasl.initial_credentials.push(parse_add_scram(spec)?);
    }
    config.sasl = sasl;
    Ok(())
}

/// Reads `authorizer.class.name`, `super.users` and `allow.everyone.if.no.acl.found`.
pub(super) fn authorizer_settings(s: &Settings, config: &mut BrokerConfig) -> Result<()> {
    let class = s.pick::<String>(None, "authorizer.class.name")?;
    let enabled = match class.as_deref().map(str::trim) {
        None | Some("") => false,
        Some(STANDARD_AUTHORIZER) | Some("weir") => true,
        Some(other) => {
            bail!("authorizer.class.name: '{other}' is not available; use {STANDARD_AUTHORIZER}")
        }
    };
    let super_users = match s.pick::<String>(None, "super.users")? {
        Some(list) => AuthorizerSettings::parse_super_users(&list).map_err(|e| anyhow!(e))?,
        None => Default::default(),
    };
    let allow_everyone_if_no_acl_found = s
        .pick::<bool>(None, "allow.everyone.if.no.acl.found")?
        .unwrap_or(false);
    config.authorizer = AuthorizerSettings {
        enabled,
        super_users,
        allow_everyone_if_no_acl_found,
    };
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

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings {
            file: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn inter_broker_sasl_takes_kafkas_settings() {
        let mut config = BrokerConfig::default();
        let s = settings(&[]);
        listeners(
            &s,
            &mut config,
            Some("SASL_PLAINTEXT://127.0.0.1:9094"),
            None,
            true,
        )
        .unwrap();
        let e = inter_broker_sasl(&s, &mut config).unwrap_err().to_string();
        assert!(e.contains("sasl.mechanism.inter.broker.protocol"), "{e}");
        let jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required \
                    username=\"broker\" password=\"s3cret\";";
        let s = settings(&[
            ("sasl.mechanism.inter.broker.protocol", "SCRAM-SHA-512"),
            (
                "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config",
                jaas,
            ),
        ]);
        inter_broker_sasl(&s, &mut config).unwrap();
        let sasl = config.inter_broker_sasl.clone().unwrap();
        assert_eq!(
            (sasl.username.as_str(), sasl.password.as_str()),
            ("broker", "s3cret")
        );
        assert!(known(
            "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config"
        ));
        let s = settings(&[("sasl.mechanism.inter.broker.protocol", "GSSAPI")]);
        assert!(inter_broker_sasl(&s, &mut config).is_err());
        let s = settings(&[
            ("sasl.mechanism.inter.broker.protocol", "PLAIN"),
            (
                "sasl.jaas.config",
                "PlainLoginModule required username=\"a\";",
            ),
        ]);
        let e = inter_broker_sasl(&s, &mut config).unwrap_err().to_string();
        assert!(e.contains("password"), "{e}");
    }
}
