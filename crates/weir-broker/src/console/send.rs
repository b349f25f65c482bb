//! Sending a test message from the console (`POST /api/messages`), only with
//! `console.writes.enable=true`, never where clients must authenticate (see
//! [`super::secured`]), and never to an internal topic. The record goes through weir-client's producer to this broker's
//! inter-broker listener, with acks=all, like any producer's.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::broker::Broker;

/// The largest request body taken.
pub(crate) const MAX_BODY: usize = 1 << 20;

/// What the console sends: a record for `topic` (its partition chosen by key when none).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Send {
    topic: String,
    partition: Option<i32>,
    key: Option<String>,
    value: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Sent {
    topic: String,
    partition: i32,
    offset: i64,
}

/// Why a send was refused or failed.
#[derive(Debug)]
pub(crate) enum Refused {
    /// Writes are off, or ACLs are in force.
    Forbidden(String),
    /// The body is not a record.
    Bad(String),
    /// The producer could not deliver it.
    Failed(String),
}

pub(crate) async fn send(broker: &Broker, body: &[u8]) -> Result<Sent, Refused> {
    if !broker.config.console_writes_enable {
        return Err(Refused::Forbidden(
            "the console is read-only: start the broker with console.writes.enable=true".into(),
        ));
    }
    if let Some(why) = super::secured(broker) {
        return Err(Refused::Forbidden(format!(
            "the console writes nothing: {why}"
        )));
    }
    let send: Send =
        serde_json::from_slice(body).map_err(|e| Refused::Bad(format!("not a record: {e}")))?;
    if crate::handlers::metadata::is_internal(&send.topic) {
        return Err(Refused::Forbidden(format!(
            "'{}' is an internal topic: the console does not write to it",
            send.topic
        )));
    }
    let me = broker.image().brokers.get(&broker.node_id()).cloned();
    let me = me.ok_or_else(|| Refused::Failed("this broker is not registered yet".into()))?;
    let mut config = weir_client::ProducerConfig::new(&format!("{}:{}", me.host, me.port));
    config.client.client_id = "weir-console".into();
    config.client.security = broker.inter_broker_security.clone();
    config.delivery_timeout = Duration::from_secs(15);
    let producer = weir_client::Producer::new(config)
        .await
        .map_err(|e| Refused::Failed(format!("cannot start a producer: {e}")))?;
    let mut record = weir_client::ProducerRecord::new(send.topic, bytes::Bytes::new());
    record.value = send.value.map(Into::into);
    record.partition = send.partition;
    record.key = send.key.map(Into::into);
    let sent = match producer.send(record).await {
        Ok(delivery) => delivery.await,
        Err(e) => Err(e),
    };
    producer.close().await;
    let sent = sent.map_err(|e| Refused::Failed(format!("not written: {e}")))?;
    Ok(Sent {
        topic: sent.topic,
        partition: sent.partition,
        offset: sent.offset,
    })
}
