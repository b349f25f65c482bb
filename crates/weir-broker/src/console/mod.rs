//! The web console served by the broker itself (`http.listeners`, at `/`): its page, script and
//! style are committed under `crates/weir-broker/console/` and built into the binary; it reads
//! the cluster from `/api/cluster`, which this broker answers from its metadata image, the
//! groups it coordinates from `/api/groups`, and records from `/api/messages`
//! (`messages.rs`). Read-only: it changes nothing.

mod messages;
mod send;

use serde::Serialize;

pub(crate) use messages::{read as read_messages, Query as MessagesQuery};
pub(crate) use send::{send, Refused, MAX_BODY};

/// The console's files: (path, content type, content).
pub(crate) const FILES: &[(&str, &str, &str)] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("../../console/index.html"),
    ),
    (
        "/console.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/console.js"),
    ),
    (
        "/console.css",
        "text/css; charset=utf-8",
        include_str!("../../console/console.css"),
    ),
];

/// Why the console shows no records and writes nothing, if it must not: it has no login, so
/// wherever the broker asks clients who they are (an authorizer, or a listener with TLS or
/// SASL), it acts for no one.
pub(crate) fn secured(broker: &crate::broker::Broker) -> Option<&'static str> {
    if broker.config.authorizer.enabled {
        return Some("the broker enforces ACLs and the console has no login");
    }
    let authenticated = broker
        .config
        .listeners
        .iter()
        .any(|l| l.protocol.tls() || l.protocol.sasl());
    authenticated
        .then_some("the broker's listeners authenticate clients and the console has no login")
}

#[derive(Debug, Serialize)]
pub(crate) struct Cluster {
    cluster_id: Option<String>,
    /// The node this answer came from.
    node_id: i32,
    /// The active controller, as this node knows it.
    controller: Option<u64>,
    quorum: Quorum,
    brokers: Vec<Broker>,
    topics: Vec<Topic>,
}

/// The metadata quorum as this node sees it.
#[derive(Debug, Serialize)]
struct Quorum {
    term: u64,
    /// The metadata log's commit index.
    committed: u64,
    /// Each voter with the entries it lacks behind the commit index, where known (on the
    /// active controller, for every voter).
    voters: Vec<Voter>,
}

#[derive(Debug, Serialize)]
struct Voter {
    id: u64,
    lag: Option<u64>,
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
    /// The configs set on the topic (the others are the broker's defaults).
    configs: std::collections::BTreeMap<String, String>,
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
    /// Bytes of this broker's copy, if it holds one.
    size: Option<u64>,
}

/// The cluster as this broker's image says: brokers, the quorum, and every partition's leader,
/// replicas and ISR, with the sizes of the copies this broker holds.
pub(crate) fn cluster(broker: &crate::broker::Broker) -> Cluster {
    let image = broker.image();
    let view = broker.quorum().view();
    let live = |b: weir_types::BrokerId| image.is_live(b);
    let size = |topic: &str, index: i32| {
        broker
            .replicas
            .get(topic, index)
            .map(|p| p.log().size_bytes())
    };
    let mut topics: Vec<Topic> = image
        .topics()
        .map(|t| Topic {
            name: t.name.clone(),
            internal: crate::handlers::metadata::is_internal(&t.name),
            configs: image.configs(&weir_meta::ConfigResource::Topic(t.name.clone())),
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
                    size: size(&t.name, *index),
                })
                .collect(),
        })
        .collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    Cluster {
        cluster_id: image.cluster_id.clone(),
        node_id: broker.node_id().0,
        controller: view.leader,
        quorum: Quorum {
            term: view.term,
            committed: view.committed,
            voters: view
                .voters
                .iter()
                .map(|(id, matched)| Voter {
                    id: *id,
                    lag: matched.map(|m| view.committed.saturating_sub(m)),
                })
                .collect(),
        },
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

#[derive(Debug, Serialize)]
pub(crate) struct Group {
    group_id: String,
    state: &'static str,
    protocol: &'static str,
    members: Vec<Member>,
    /// Committed offsets, with the lag behind the high watermark where this broker holds the
    /// partition (`None` elsewhere).
    offsets: Vec<GroupOffset>,
    /// The sum of the lags, when every committed partition's is known here.
    lag: Option<i64>,
}

#[derive(Debug, Serialize)]
struct Member {
    member_id: String,
    client_id: String,
    host: String,
    /// Partitions assigned, by topic.
    assignment: std::collections::BTreeMap<String, std::collections::BTreeSet<i32>>,
}

#[derive(Debug, Serialize)]
struct GroupOffset {
    topic: String,
    partition: i32,
    committed: i64,
    high_watermark: Option<i64>,
    lag: Option<i64>,
}

/// The groups this broker coordinates, with each committed partition's lag.
pub(crate) fn groups(broker: &crate::broker::Broker) -> Vec<Group> {
    broker
        .groups
        .summaries()
        .into_iter()
        .map(|g| {
            let offsets: Vec<GroupOffset> = g
                .offsets
                .into_iter()
                .map(|((topic, partition), committed)| {
                    let high_watermark = broker
                        .replicas
                        .get(&topic, partition)
                        .map(|p| p.high_watermark().0);
                    let lag = high_watermark
                        .filter(|_| committed >= 0)
                        .map(|hw| hw.saturating_sub(committed).max(0));
                    GroupOffset {
                        topic,
                        partition,
                        committed,
                        high_watermark,
                        lag,
                    }
                })
                .collect();
            Group {
                group_id: g.group_id,
                state: g.state,
                protocol: g.protocol,
                members: g
                    .members
                    .into_iter()
                    .map(|m| Member {
                        member_id: m.member_id,
                        client_id: m.client_id,
                        host: m.host,
                        assignment: m.assignment,
                    })
                    .collect(),
                lag: offsets.iter().map(|o| o.lag).sum(),
                offsets,
            }
        })
        .collect()
}
