//! The connections' probe: requests by API with their total time, connections open per
//! listener, and operations parked in a purgatory. Each handle is made once, so a request
//! costs two atomic adds and no lookup by label.

use std::sync::OnceLock;
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::partition::millisecond_buckets;

type RequestLabel = [(&'static str, String); 1];
type ListenerLabel = [(&'static str, String); 1];
type HistogramFamily = Family<RequestLabel, Histogram, fn() -> Histogram>;

fn request_histogram() -> Histogram {
    Histogram::new(millisecond_buckets())
}

/// Which purgatory an operation waits in (Kafka's `delayedOperation` label).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Purgatory {
    /// acks=all produces waiting for the ISR.
    Produce,
    /// Long-poll fetches waiting for bytes.
    Fetch,
}

#[derive(Debug)]
pub(crate) struct RequestProbe {
    requests: Family<RequestLabel, Counter>,
    total_time_ms: HistogramFamily,
    /// By API key: the handles of that API's series, once it was asked for.
    by_api: Vec<OnceLock<(Counter, Histogram)>>,
    connections: Family<ListenerLabel, Gauge>,
    parked_produce: Gauge,
    parked_fetch: Gauge,
}

impl Default for RequestProbe {
    fn default() -> RequestProbe {
        let mut by_api = Vec::new();
        for spec in crate::apis::APIS {
            let key = spec.key as i16 as usize;
            if by_api.len() <= key {
                by_api.resize_with(key + 1, OnceLock::new);
            }
        }
        RequestProbe {
            requests: Family::default(),
            total_time_ms: HistogramFamily::new_with_constructor(request_histogram),
            by_api,
            connections: Family::default(),
            parked_produce: Gauge::default(),
            parked_fetch: Gauge::default(),
        }
    }
}

impl RequestProbe {
    /// A request was answered (or, for acks=0, done) `took` after it was read.
    pub(crate) fn answered(&self, api: ApiKey, took: Duration) {
        let Some(slot) = self.by_api.get(api as i16 as usize) else {
            return;
        };
        // An API's series appear with its first request.
        let (count, time) = slot.get_or_init(|| {
            // `ApiKey`'s Debug form is Kafka's name of the API (`Produce`, `Fetch`, ...).
            let label = [("request", format!("{api:?}"))];
            (
                self.requests.get_or_create(&label).clone(),
                self.total_time_ms.get_or_create(&label).clone(),
            )
        });
        count.inc();
        time.observe(took.as_secs_f64() * 1e3);
    }

    /// The gauge of connections open on `listener`.
    pub(crate) fn connections(&self, listener: &str) -> Gauge {
        self.connections
            .get_or_create(&[("listener", listener.to_string())])
            .clone()
    }

    /// Counts an operation as parked until the guard is dropped.
    pub(crate) fn park(&self, purgatory: Purgatory) -> Counted {
        let gauge = match purgatory {
            Purgatory::Produce => &self.parked_produce,
            Purgatory::Fetch => &self.parked_fetch,
        };
        Counted::new(gauge.clone())
    }

    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "kafka_network_requestmetrics_requests",
            "Requests answered, by API",
            self.requests.clone(),
        );
        registry.register(
            "kafka_network_requestmetrics_totaltimems",
            "Milliseconds from a request read to its answer written, by API",
            self.total_time_ms.clone(),
        );
        registry.register(
            "kafka_server_socket_server_metrics_connection_count",
            "Client connections open, by listener",
            self.connections.clone(),
        );
        let parked = Family::<[(&'static str, &'static str); 1], Gauge>::default();
        parked
            .get_or_create(&[("delayedOperation", "Produce")])
            .set(self.parked_produce.get());
        parked
            .get_or_create(&[("delayedOperation", "Fetch")])
            .set(self.parked_fetch.get());
        registry.register(
            "kafka_server_delayedoperationpurgatory_purgatorysize",
            "Operations parked: acks=all produces waiting for the ISR, fetches waiting for bytes",
            parked,
        );
    }
}

/// Counts one thing (a connection, a parked operation) while it lives.
#[derive(Debug)]
pub(crate) struct Counted(Gauge);

impl Counted {
    pub(crate) fn new(gauge: Gauge) -> Counted {
        gauge.inc();
        Counted(gauge)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_count_by_api_and_parked_operations_by_guard() {
        let probe = RequestProbe::default();
        probe.answered(ApiKey::Produce, Duration::from_millis(3));
        probe.answered(ApiKey::Produce, Duration::from_millis(5));
        probe.answered(ApiKey::Fetch, Duration::from_micros(10));
        let held = probe.park(Purgatory::Fetch);
        let open = Counted::new(probe.connections("PLAINTEXT"));
        let mut registry = Registry::default();
        probe.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("kafka_network_requestmetrics_requests_total{request=\"Produce\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("kafka_network_requestmetrics_totaltimems_count{request=\"Fetch\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("kafka_network_requestmetrics_totaltimems_sum{request=\"Produce\"} 8"),
            "{text}"
        );
        assert!(
            text.contains("purgatorysize{delayedOperation=\"Fetch\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("connection_count{listener=\"PLAINTEXT\"} 1\n"),
            "{text}"
        );
        drop((held, open));
        let mut registry = Registry::default();
        probe.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("purgatorysize{delayedOperation=\"Fetch\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("connection_count{listener=\"PLAINTEXT\"} 0\n"),
            "{text}"
        );
    }
}
