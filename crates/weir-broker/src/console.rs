//! The web console served by the broker itself (`http.listeners`, at `/`): its page, script and
//! style are committed under `crates/weir-broker/console/` and built into the binary; it reads
//! the cluster from `/api/cluster`, which this broker answers from its metadata image.
//! Read-only: it changes nothing.

use serde::Serialize;
use weir_meta::MetadataImage;

/// The console's files: (path, content type, content).
pub(crate) const FILES: &[(&str, &str, &str)] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("../console/index.html"),
    ),
    (
        "/console.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/console.js"),
    ),
    (
        "/console.css",
        "text/css; charset=utf-8",
        include_str!("../console/console.css"),
    ),
];

#[derive(Debug, Serialize)]
pub(crate) struct Cluster {
    cluster_id: Option<String>,
    /// The node this answer came from.
    node_id: i32,
    /// The active controller, as this node knows it.
    controller: Option<u64>,
    brokers: Vec<Broker>,
    topics: Vec<Topic>,
}

#[derive(Debug, Serialize)]
struct Broker {
    id: i32,
    host: String,
    port: i32,
    rack: Option<String>,
    /// Registered and unfenced: it serves its partitions.
    live: bool,
}

#[derive(Debug, Serialize)]
struct Topic {
    name: String,
    internal: bool,
    partitions: Vec<Partition>,
}

#[derive(Debug, Serialize)]
struct Partition {
    partition: i32,
    leader: Option<i32>,
    leader_epoch: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    /// Replicas on brokers that are not live.
    offline: Vec<i32>,
}

/// The cluster as the image says: brokers, and every partition's leader, replicas and ISR.
pub(crate) fn cluster(image: &MetadataImage, node_id: i32, controller: Option<u64>) -> Cluster {
    let live = |b: weir_types::BrokerId| image.is_live(b);
    let mut topics: Vec<Topic> = image
        .topics()
        .map(|t| Topic {
            name: t.name.clone(),
            internal: t.name.starts_with("__"),
            partitions: t
                .partitions
                .iter()
                .map(|(index, p)| Partition {
                    partition: *index,
                    leader: p.leader.map(|l| l.0),
                    leader_epoch: p.leader_epoch.0,
                    replicas: p.replicas.iter().map(|r| r.0).collect(),
                    isr: p.isr.iter().map(|r| r.0).collect(),
                    offline: p
                        .replicas
                        .iter()
                        .filter(|r| !live(**r))
                        .map(|r| r.0)
                        .collect(),
                })
                .collect(),
        })
        .collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    Cluster {
        cluster_id: image.cluster_id.clone(),
        node_id,
        controller,
        brokers: image
            .brokers
            .values()
            .map(|b| Broker {
                id: b.broker_id.0,
                host: b.host.clone(),
                port: b.port,
                rack: b.rack.clone(),
                live: live(b.broker_id),
            })
            .collect(),
        topics,
    }
}
