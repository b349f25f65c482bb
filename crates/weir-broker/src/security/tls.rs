//! TLS for SSL and SASL_SSL listeners, with rustls and PEM files under Kafka's setting names:
//! `ssl.keystore.location` (the private key and certificate chain, `ssl.keystore.type=PEM`),
//! `ssl.truststore.location` (the CA certificates that client certificates must chain to) and
//! `ssl.client.auth` (`required`, `requested` or `none`).
//!
//! With a client certificate, the connection's principal is the certificate's subject as an
//! RFC 2253 name (`CN=alice,OU=eng,O=Example`, as Java's `X500Principal.getName()` writes it),
//! mapped by `ssl.principal.mapping.rules`. Without one it is `User:ANONYMOUS`, as in Kafka.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use x509_parser::asn1_rs::ToDer;

use super::principal_rules::PrincipalRules;

/// `ssl.client.auth`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClientAuth {
    #[default]
    None,
    Requested,
    Required,
}

impl ClientAuth {
    pub fn parse(s: &str) -> Option<ClientAuth> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" => Some(ClientAuth::None),
            "requested" => Some(ClientAuth::Requested),
            "required" => Some(ClientAuth::Required),
            _ => None,
        }
    }
}

/// The TLS settings shared by every TLS listener.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// `ssl.keystore.location`: a PEM file with the private key and the certificate chain.
    pub keystore: Option<PathBuf>,
    /// `ssl.truststore.location`: a PEM file of CA certificates for client certificates.
    pub truststore: Option<PathBuf>,
    /// `ssl.client.auth`
    pub client_auth: ClientAuth,
    /// `ssl.principal.mapping.rules`
    pub principal_rules: PrincipalRules,
}

/// Builds the rustls server side of the TLS listeners. Errors are one line, naming the setting.
pub fn server_config(settings: &TlsSettings) -> Result<Arc<ServerConfig>, String> {
    let keystore = settings
        .keystore
        .as_deref()
        .ok_or("a TLS listener needs ssl.keystore.location (a PEM file of key and certificates)")?;
    let certs = read_certificates(keystore, "ssl.keystore.location")?;
    let key = PrivateKeyDer::from_pem_file(keystore).map_err(|e| {
        format!(
            "ssl.keystore.location: no unencrypted private key in {}: {e}",
            keystore.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match settings.client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        auth => {
            let truststore = settings.truststore.as_deref().ok_or(
                "ssl.client.auth needs ssl.truststore.location (a PEM file of CA certificates)",
            )?;
            let mut roots = RootCertStore::empty();
            for cert in read_certificates(truststore, "ssl.truststore.location")? {
                roots.add(cert).map_err(|e| {
                    format!(
                        "ssl.truststore.location: a certificate in {} is not usable: {e}",
                        truststore.display()
                    )
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if auth == ClientAuth::Requested {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| format!("ssl.truststore.location: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_single_cert(certs, key).map_err(|e| {
        format!(
            "ssl.keystore.location: the key does not match the certificate in {}: {e}",
            keystore.display()
        )
    })?;
    Ok(Arc::new(config))
}

fn read_certificates(path: &Path, setting: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{setting}: cannot read {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{setting}: no certificate in {}", path.display()));
    }
    Ok(certs)
}

/// The subject of a DER certificate as an RFC 2253 name: its relative names last to first,
/// joined by `,`, with the short keywords Java knows and dotted OIDs for the rest.
pub fn subject_name(der: &[u8]) -> Result<String, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("unreadable client certificate: {e}"))?;
    let mut rdns = Vec::new();
    for rdn in cert.subject().iter() {
        let mut parts = Vec::new();
        for attr in rdn.iter() {
            let oid = attr.attr_type().to_id_string();
            // Java writes a value as text only under a keyword it knows and for a string type;
            // anything else is `#` and the hex of the value's whole DER encoding (RFC 2253 2.4).
            let text = keyword(&oid).zip(attr.as_str().ok());
            let part = match text {
                Some((k, value)) => format!("{k}={}", escape(value)),
                None => {
                    let der = attr
                        .attr_value()
                        .to_der_vec()
                        .map_err(|e| format!("unreadable client certificate subject: {e}"))?;
                    let name = keyword(&oid).map_or(oid.clone(), str::to_string);
                    format!("{name}=#{}", hex(&der))
                }
            };
            parts.push(part);
        }
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    Ok(rdns.join(","))
}

/// RFC 2253's keywords (those Java's RFC 2253 form writes by name).
fn keyword(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// RFC 2253 escaping of an attribute value, as Java's `X500Principal.getName()` does it: a
/// backslash before each of `,=+<>#;"\`, before every leading and trailing space, and NUL as
/// `\00`.
fn escape(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let lead = chars.iter().take_while(|c| **c == ' ').count();
    let trail = chars.iter().rev().take_while(|c| **c == ' ').count();
    let mut out = String::with_capacity(s.len());
    for (i, c) in chars.iter().enumerate() {
        match c {
            '\0' => out.push_str("\\00"),
            ',' | '=' | '+' | '<' | '>' | '#' | ';' | '"' | '\\' => {
                out.push('\\');
                out.push(*c);
            }
            ' ' if i < lead || i >= chars.len() - trail => out.push_str("\\ "),
            c => out.push(*c),
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_as_rfc_2253_says() {
        assert_eq!(escape("a,b+c"), "a\\,b\\+c");
        assert_eq!(escape("#x "), "\\#x\\ ");
        assert_eq!(escape("a=b#c"), "a\\=b\\#c");
        assert_eq!(escape("  two  "), "\\ \\ two\\ \\ ");
        assert_eq!(escape("a\0b"), "a\\00b");
        assert_eq!(escape("plain"), "plain");
        assert_eq!(escape(""), "");
    }

    #[test]
    fn a_subject_reads_last_name_first_with_escapes_and_keywords() {
        let pem = include_bytes!("testdata/client.cert.pem");
        let der = CertificateDer::from_pem_slice(pem).expect("a certificate");
        // DER order: C, O, (OU + UID), CN.
        assert_eq!(
            subject_name(&der).expect("readable"),
            "CN=alice,OU=eng+UID=42,O=Weir\\, Inc.,C=US"
        );
        assert!(subject_name(b"not a certificate").is_err());
    }

    #[test]
    fn settings_errors_name_the_setting() {
        let e = server_config(&TlsSettings::default()).expect_err("no keystore");
        assert!(e.contains("ssl.keystore.location"), "{e}");
        let e = server_config(&TlsSettings {
            keystore: Some("/nonexistent/key.pem".into()),
            ..TlsSettings::default()
        })
        .expect_err("missing file");
        assert!(e.contains("cannot read /nonexistent/key.pem"), "{e}");
    }
}
