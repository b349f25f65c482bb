//! The broker's metrics, in Prometheus' text format with Kafka's JMX names as the Prometheus
//! JMX exporter writes them (`kafka_server_brokertopicmetrics_bytesin_total`), so dashboards
//! made for Kafka read them.
//!
//! Each module feeds one probe: connections the [`RequestProbe`], partitions their
//! [`PartitionProbe`] (with the [`ReplicaProbe`] all of a broker's partitions share). What is
//! state rather than events (log sizes, ISR, the quorum, group lag) is read from the broker at
//! each scrape (`state.rs`). The crate `prometheus-client` keeps the counters and histograms and
//! writes the text.

mod partition;
mod requests;
mod state;

use std::sync::Arc;

use prometheus_client::registry::Registry;

pub(crate) use partition::{PartitionProbe, ReplicaProbe};
pub(crate) use requests::{Counted, Purgatory, RequestProbe};

use crate::broker::Broker;

/// The `Content-Type` of what [`render`] writes.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Every metric of `broker`, as a scrape reads them now.
pub fn render(broker: &Broker) -> String {
    let mut registry = Registry::default();
    broker.requests.register(&mut registry);
    register_replicas(&mut registry, &broker.replicas.probe());
    state::register(&mut registry, broker);
    let mut text = String::new();
    // Writing to a String fails only if a value's Display fails, which none of ours does.
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry) {
        tracing::error!(error = %e, "cannot write the metrics");
    }
    text
}

fn register_replicas(registry: &mut Registry, probe: &Arc<ReplicaProbe>) {
    registry.register(
        "kafka_log_logflushstats_logflushrateandtimems",
        "Milliseconds of each log fsync",
        probe.fsync_ms.clone(),
    );
    registry.register(
        "kafka_server_replicamanager_isrshrinks",
        "Times the ISR of a partition this broker leads got smaller",
        probe.isr_shrinks.clone(),
    );
    registry.register(
        "kafka_server_replicamanager_isrexpands",
        "Times the ISR of a partition this broker leads got larger",
        probe.isr_expands.clone(),
    );
}
