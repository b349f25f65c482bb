//! `--command-config FILE`: Kafka's client properties for the tools (`key=value` lines, `#`
//! and `!` comments), read into weir-client's `Security`. Understood: `security.protocol`;
//! `ssl.ca.location` (or a PEM `ssl.truststore.location`), `ssl.certificate.location` with
//! `ssl.key.location` (or a PEM `ssl.keystore.location` holding both); `sasl.mechanism`,
//! `sasl.username` with `sasl.password`, or the `username` and `password` of
//! `sasl.jaas.config`. Other client settings are ignored, with a warning, as Kafka's tools do.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use weir_client::{Sasl, SaslMechanism, Security};

/// The security the properties file at `path` asks for.
pub(crate) fn read(path: &Path) -> Result<Security> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --command-config {}", path.display()))?;
    security(&properties(&text)).with_context(|| format!("--command-config {}", path.display()))
}

fn properties(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .filter_map(|l| {
            let (k, v) = l.split_once('=').or_else(|| l.split_once(':'))?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

const KNOWN: &[&str] = &[
    "security.protocol",
    "ssl.ca.location",
    "ssl.truststore.location",
    "ssl.truststore.type",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.keystore.location",
    "ssl.keystore.type",
    "sasl.mechanism",
    "sasl.username",
    "sasl.password",
    "sasl.jaas.config",
];

fn security(p: &BTreeMap<String, String>) -> Result<Security> {
    for key in p.keys().filter(|k| !KNOWN.contains(&k.as_str())) {
        eprintln!("warning: --command-config: '{key}' is not used by weir's tools");
    }
    for key in ["ssl.truststore.type", "ssl.keystore.type"] {
        if let Some(kind) = p.get(key).filter(|k| !k.eq_ignore_ascii_case("PEM")) {
            bail!("{key}: only PEM is supported, not {kind}");
        }
    }
    let protocol = p
        .get("security.protocol")
        .map_or("PLAINTEXT", String::as_str)
        .to_ascii_uppercase();
    let (tls, sasl) = match protocol.as_str() {
        "PLAINTEXT" => (false, false),
        "SSL" => (true, false),
        "SASL_PLAINTEXT" => (false, true),
        "SASL_SSL" => (true, true),
        other => {
            bail!("security.protocol: '{other}' is not PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
        }
    };
    let mut security = Security::plaintext();
    if tls {
        let ca = p
            .get("ssl.ca.location")
            .or_else(|| p.get("ssl.truststore.location"))
            .map(PathBuf::from)
            .ok_or_else(|| {
                anyhow!("{protocol} needs ssl.ca.location (a PEM file of CA certificates)")
            })?;
        let keystore = p.get("ssl.keystore.location").map(PathBuf::from);
        let cert = p
            .get("ssl.certificate.location")
            .map(PathBuf::from)
            .or(keystore.clone());
        let key = p.get("ssl.key.location").map(PathBuf::from).or(keystore);
        let identity = match (&cert, &key) {
            (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
            (None, None) => None,
            _ => bail!("ssl.certificate.location and ssl.key.location go together"),
        };
        security = Security::tls(&ca, identity).map_err(|e| anyhow!("{e}"))?;
    }
    if sasl {
        let mechanism = p.get("sasl.mechanism").map_or("GSSAPI", String::as_str);
        let mechanism = SaslMechanism::from_name(mechanism).ok_or_else(|| {
            anyhow!("sasl.mechanism: '{mechanism}' is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
        })?;
        let jaas = p.get("sasl.jaas.config").map(|j| jaas_options(j));
        let from_jaas = |name: &str| jaas.as_ref().and_then(|o| o.get(name).cloned());
        let username = p
            .get("sasl.username")
            .cloned()
            .or_else(|| from_jaas("username"))
            .ok_or_else(|| anyhow!("{protocol} needs sasl.username or sasl.jaas.config"))?;
        let password = p
            .get("sasl.password")
            .cloned()
            .or_else(|| from_jaas("password"))
            .ok_or_else(|| anyhow!("{protocol} needs sasl.password or sasl.jaas.config"))?;
        security = security.with_sasl(Sasl {
            mechanism,
            username,
            password,
        });
    }
    Ok(security)
}

/// The `key="value"` options of a JAAS line such as
/// `org.apache.kafka.common.security.scram.ScramLoginModule required username="a" password="b";`.
pub(crate) fn jaas_options(line: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = line;
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq]
            .rsplit(char::is_whitespace)
            .next()
            .unwrap_or_default();
        let after = &rest[eq + 1..];
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            },
            None => {
                let end = after
                    .find(|c: char| c.is_whitespace() || c == ';')
                    .unwrap_or(after.len());
                (&after[..end], &after[end..])
            }
        };
        out.insert(key.to_string(), value.to_string());
        rest = next;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_client_properties_are_read() {
        let p = properties(
            "# a comment\nsecurity.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-512\n\
             sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"alice\" password=\"a b=c\";\n",
        );
        let s = security(&p).expect("valid");
        assert_eq!(format!("{s:?}"), "SASL_PLAINTEXT");
        let o = jaas_options(&p["sasl.jaas.config"]);
        assert_eq!(o["username"], "alice");
        assert_eq!(o["password"], "a b=c");
        for bad in [
            "security.protocol=TLS",
            "security.protocol=SSL",
            "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=GSSAPI\nsasl.username=a\nsasl.password=b",
            "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\nsasl.username=a",
            "security.protocol=SSL\nssl.ca.location=/x\nssl.keystore.type=JKS",
        ] {
            assert!(security(&properties(bad)).is_err(), "{bad}");
        }
    }
}
