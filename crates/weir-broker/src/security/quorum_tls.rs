//! Mutual TLS on the metadata quorum's port, when the CONTROLLER listener is mapped to SSL:
//! voters, brokers and controllers present the node's keystore and check each other against
//! the truststore, and a peer is served only when its certificate's principal may speak to the
//! quorum: with an authorizer, a super user (Kafka asks ClusterAction of the quorum's RPC;
//! super users hold it, and nothing else on these connections is authorized by ACLs); without
//! one, any certificate the truststore signs.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use weir_meta::quorum::QuorumTls;

use super::tls::{self, ClientAuth};
use crate::config::BrokerConfig;

/// The quorum's TLS for this node, or `None` when the CONTROLLER listener is PLAINTEXT.
pub fn quorum_tls(config: &BrokerConfig) -> Result<Option<Arc<QuorumTls>>, String> {
    if !config.controller_tls {
        return Ok(None);
    }
    let mut settings = config.tls.clone();
    settings.client_auth = ClientAuth::Required;
    let server =
        tls::server_config(&settings).map_err(|e| format!("the SSL controller listener: {e}"))?;
    let (Some(truststore), Some(keystore)) = (&settings.truststore, &settings.keystore) else {
        return Err(
            "the SSL controller listener needs ssl.keystore.location and ssl.truststore.location"
                .into(),
        );
    };
    let client = weir_client::Security::tls(truststore, Some((keystore, keystore)))
        .map_err(|e| format!("the SSL controller listener: {e}"))?
        .client_config()
        .ok_or("the SSL controller listener: no TLS client configuration")?;
    let rules = settings.principal_rules.clone();
    let authorizer = config.authorizer.clone();
    let admit = move |chain: &[CertificateDer<'static>]| -> Result<String, String> {
        let cert = chain.first().ok_or("no certificate")?;
        let subject = tls::subject_name(cert)?;
        let name = rules
            .apply(&subject)
            .ok_or_else(|| format!("no ssl.principal.mapping.rules rule matches '{subject}'"))?;
        let principal = format!("User:{name}");
        if authorizer.enabled && !authorizer.super_users.contains(&principal) {
            return Err(format!(
                "{principal} is not in super.users, and only super users speak to the metadata quorum"
            ));
        }
        Ok(principal)
    };
    Ok(Some(Arc::new(QuorumTls {
        server,
        client,
        admit: Box::new(admit),
    })))
}
