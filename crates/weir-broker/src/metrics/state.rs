//! What `/metrics` reads from the broker's state at each scrape: partitions and their logs, the
//! metadata image and quorum, and the groups this broker coordinates. Nothing here runs on a
//! request's path; each part takes its locks briefly, one partition or one coordinator at a
//! time.

use std::collections::BTreeMap;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::Ordering;

use super::partition::Traffic;
use crate::broker::Broker;

type Labels = Vec<(&'static str, String)>;

/// Gauges and counters filled from one reading, registered at the end.
#[derive(Default)]
struct Reading {
    gauges: BTreeMap<&'static str, (&'static str, Family<Labels, Gauge>)>,
    counters: BTreeMap<&'static str, (&'static str, Family<Labels, Counter>)>,
}

impl Reading {
    fn gauge(&mut self, name: &'static str, help: &'static str, labels: Labels, value: i64) {
        let (_, family) = self
            .gauges
            .entry(name)
            .or_insert_with(|| (help, Family::default()));
        family.get_or_create(&labels).set(value);
    }

    /// A counter kept elsewhere (in atomics), read now.
    fn counter(&mut self, name: &'static str, help: &'static str, labels: Labels, value: u64) {
        let (_, family) = self
            .counters
            .entry(name)
            .or_insert_with(|| (help, Family::default()));
        family.get_or_create(&labels).inc_by(value);
    }

    fn register(self, registry: &mut Registry) {
        for (name, (help, family)) in self.gauges {
            registry.register(name, help, family);
        }
        for (name, (help, family)) in self.counters {
            registry.register(name, help, family);
        }
    }
}

fn partition_labels(topic: &str, partition: i32) -> Labels {
    vec![
        ("topic", topic.to_string()),
        ("partition", partition.to_string()),
    ]
}

/// Registers everything read from `broker` now.
pub(crate) fn register(registry: &mut Registry, broker: &Broker) {
    let mut r = Reading::default();
    partitions(&mut r, broker);
    quorum(&mut r, broker);
    groups(&mut r, broker);
    r.register(registry);
}

/// The partitions this broker holds: their logs, traffic and replication.
fn partitions(r: &mut Reading, broker: &Broker) {
    let me = broker.node_id();
    let image = broker.image();
    let (mut held, mut leading, mut under, mut under_min) = (0, 0, 0, 0);
    let mut by_topic: BTreeMap<String, Traffic> = BTreeMap::new();
    for p in broker.replicas.all() {
        held += 1;
        let labels = || partition_labels(&p.topic, p.index);
        let mut lacking = false;
        if p.is_leader(me) {
            leading += 1;
            let replicas = image
                .topic(&p.topic)
                .and_then(|t| t.partitions.get(&p.index))
                .map_or(0, |i| i.replicas.len());
            let isr = p.isr_size.load(Ordering::Acquire);
            lacking = isr < replicas;
            under += i64::from(lacking);
            under_min += i64::from(isr < p.min_insync_replicas.load(Ordering::Acquire));
        }
        let (size, start, end) = {
            let log = p.log();
            (
                log.size_bytes(),
                log.log_start_offset().0,
                log.log_end_offset().0,
            )
        };
        r.gauge(
            "kafka_log_log_size",
            "Bytes of the partition's log on disk",
            labels(),
            size as i64,
        );
        r.gauge(
            "kafka_log_log_logstartoffset",
            "The partition's log start offset",
            labels(),
            start,
        );
        r.gauge(
            "kafka_log_log_logendoffset",
            "The partition's log end offset",
            labels(),
            end,
        );
        r.gauge(
            "kafka_cluster_partition_underreplicated",
            "1 when this broker leads the partition and its ISR lacks a replica",
            labels(),
            i64::from(lacking),
        );
        let t = p.probe.traffic();
        partition_traffic(r, labels(), t);
        *by_topic.entry(p.topic.clone()).or_default() += t;
    }
    for (topic, t) in by_topic {
        topic_traffic(r, vec![("topic", topic)], t);
    }
    // The broker's totals count partitions it no longer holds too: they never go down.
    topic_traffic(r, Vec::new(), broker.replicas.probe().totals());
    r.gauge(
        "kafka_server_replicamanager_partitioncount",
        "Partitions with a replica on this broker",
        Vec::new(),
        held,
    );
    r.gauge(
        "kafka_server_replicamanager_leadercount",
        "Partitions this broker leads",
        Vec::new(),
        leading,
    );
    r.gauge(
        "kafka_server_replicamanager_underreplicatedpartitions",
        "Partitions this broker leads whose ISR lacks a replica",
        Vec::new(),
        under,
    );
    r.gauge(
        "kafka_server_replicamanager_underminisrpartitioncount",
        "Partitions this broker leads whose ISR is smaller than min.insync.replicas",
        Vec::new(),
        under_min,
    );
}

fn partition_traffic(r: &mut Reading, labels: Labels, t: Traffic) {
    r.counter(
        "weir_partition_bytesin",
        "Bytes produced to the partition on this broker",
        labels.clone(),
        t.bytes_in,
    );
    r.counter(
        "weir_partition_messagesin",
        "Records produced to the partition on this broker",
        labels.clone(),
        t.records_in,
    );
    r.counter(
        "weir_partition_bytesout",
        "Bytes of the partition sent to consumers",
        labels.clone(),
        t.bytes_out,
    );
    r.counter(
        "weir_partition_messagesout",
        "Offsets of the partition sent to consumers (records, with control records and compacted gaps)",
        labels,
        t.records_out,
    );
}

/// Kafka's BrokerTopicMetrics: per topic, and without a topic label for all of them.
fn topic_traffic(r: &mut Reading, labels: Labels, t: Traffic) {
    r.counter(
        "kafka_server_brokertopicmetrics_bytesin",
        "Bytes produced",
        labels.clone(),
        t.bytes_in,
    );
    r.counter(
        "kafka_server_brokertopicmetrics_messagesin",
        "Records produced",
        labels.clone(),
        t.records_in,
    );
    r.counter(
        "kafka_server_brokertopicmetrics_bytesout",
        "Bytes sent to consumers",
        labels.clone(),
        t.bytes_out,
    );
    r.counter(
        "kafka_server_brokertopicmetrics_replicationbytesout",
        "Bytes sent to followers",
        labels,
        t.replication_bytes_out,
    );
}

/// The metadata quorum as this node sees it.
fn quorum(r: &mut Reading, broker: &Broker) {
    let me = broker.node_id();
    let view = broker.quorum().view();
    let active = view.leader == Some(u64::from(me.0 as u32));
    r.gauge(
        "kafka_controller_kafkacontroller_activecontrollercount",
        "1 on the active controller",
        Vec::new(),
        i64::from(active),
    );
    r.gauge(
        "kafka_server_raft_metrics_current_leader",
        "The active controller's node id, -1 when none is known",
        Vec::new(),
        view.leader.map_or(-1, |l| l as i64),
    );
    r.gauge(
        "kafka_server_raft_metrics_current_epoch",
        "The metadata quorum's term",
        Vec::new(),
        view.term as i64,
    );
    r.gauge(
        "kafka_server_raft_metrics_high_watermark",
        "The metadata log's commit index",
        Vec::new(),
        view.committed as i64,
    );
    for (voter, matched) in &view.voters {
        if let Some(matched) = matched {
            r.gauge(
                "weir_raft_voter_lag",
                "Committed metadata entries a voter does not hold yet, as this node knows",
                vec![("voter", voter.to_string())],
                view.committed.saturating_sub(*matched) as i64,
            );
        }
    }
    let image = broker.image();
    let offline = if active {
        image
            .topics()
            .flat_map(|t| t.partitions.values())
            .filter(|p| p.leader.is_none())
            .count() as i64
    } else {
        0
    };
    r.gauge(
        "kafka_controller_kafkacontroller_offlinepartitionscount",
        "Partitions without a leader (reported by the active controller)",
        Vec::new(),
        offline,
    );
    r.gauge(
        "kafka_controller_kafkacontroller_fencedbrokercount",
        "Registered brokers that are fenced",
        Vec::new(),
        image.brokers.values().filter(|b| b.fenced).count() as i64,
    );
}

/// The groups this broker coordinates, with each committed partition's lag behind its high
/// watermark where this broker holds the partition.
fn groups(r: &mut Reading, broker: &Broker) {
    let groups = broker.groups.committed_offsets();
    r.gauge(
        "kafka_coordinator_group_groupmetadatamanager_numgroups",
        "Groups this broker coordinates",
        Vec::new(),
        groups.len() as i64,
    );
    for (group, offsets) in groups {
        for ((topic, index), offset) in offsets {
            // A client may commit any offset; a negative one says nothing of lag.
            let Some(p) = broker.replicas.get(&topic, index).filter(|_| offset >= 0) else {
                continue;
            };
            let lag = p.high_watermark().0.saturating_sub(offset).max(0);
            r.gauge(
                "kafka_consumergroup_lag",
                "Records between a group's committed offset and the partition's high watermark",
                vec![
                    ("consumergroup", group.clone()),
                    ("topic", topic),
                    ("partition", index.to_string()),
                ],
                lag,
            );
        }
    }
}
