#![allow(clippy::unwrap_used)] // tests: a failure is a test failure

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use uuid::Uuid;
use weir_types::{BrokerId, LeaderEpoch};

use super::*;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<NodeId>> {
        let dir = tempfile::tempdir().unwrap();
        let log = LogStore::open(dir.path()).unwrap();
        let sm = StateMachine::open(dir.path()).unwrap();
        Ok((dir, log, sm))
    }
}

/// openraft's own conformance suite, run on our log storage and state machine.
#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).unwrap();
}

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn topic(name: &str) -> MetadataRecord {
    MetadataRecord::Topic {
        name: name.into(),
        topic_id: Uuid::new_v4(),
    }
}

async fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn config(id: NodeId, voters: &BTreeMap<NodeId, String>, dir: &std::path::Path) -> QuorumConfig {
    QuorumConfig {
        node_id: id,
        listener: voters[&id].parse().unwrap(),
        voters: voters.clone(),
        dir: dir.join(format!("node-{id}")),
        heartbeat_interval: Duration::from_millis(50),
        snapshot_every: 8,
        session_timeout: Duration::from_secs(2),
        unclean_default: false,
        tls: None,
    }
}

/// Starts a voter again on its old port. Between the stop and the start, another test's
/// outgoing connection may have been given that port as its ephemeral one (the ranges overlap):
/// wait for it to go, as an operator restarting a broker would.
async fn restart(cfg: QuorumConfig) -> MetaQuorum {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match MetaQuorum::start(cfg.clone()).await {
            Ok(q) => return q,
            Err(QuorumError::Io(e))
                if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("cannot restart the voter: {e}"),
        }
    }
}

/// Writes survive a restart, through the log and through a snapshot that purged the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_voter_keeps_its_records_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = QuorumConfig::single(1, free_port(), dir.path().join("raft"));
    cfg.snapshot_every = 8;
    let q = MetaQuorum::start(cfg.clone()).await.unwrap();
    assert_eq!(q.wait_for_leader(Duration::from_secs(5)).await, Some(1));
    for i in 0..5 {
        q.write(vec![topic(&format!("t{i}"))]).await.unwrap();
    }
    q.shutdown().await;
    let q = restart(cfg.clone()).await;
    q.wait_for_leader(Duration::from_secs(5)).await;
    wait_until("the log is replayed", Duration::from_secs(5), || {
        q.image().topics().count() == 5
    })
    .await;
    for i in 5..30 {
        q.write(vec![topic(&format!("t{i}"))]).await.unwrap();
    }
    q.snapshot().await.unwrap();
    q.write(vec![topic("after-snapshot")]).await.unwrap();
    q.shutdown().await;
    assert!(dir.path().join("raft/snapshot").exists());
    let q = restart(cfg).await;
    q.wait_for_leader(Duration::from_secs(5)).await;
    wait_until(
        "snapshot and log are replayed",
        Duration::from_secs(5),
        || q.image().topics().count() == 31,
    )
    .await;
    assert!(q.image().topic("after-snapshot").is_some());
    q.shutdown().await;
}

/// Three voters: one leader at a time; writes reach every voter; killing the leader elects
/// another (with a higher term) that takes writes; a follower refuses writes and names the
/// leader; the old leader returns and catches up (its peers snapshot every 8 entries and purge
/// their logs, so it may need a snapshot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_voters_survive_the_loss_of_the_leader() {
    let dir = tempfile::tempdir().unwrap();
    let voters: BTreeMap<NodeId, String> =
        (1..=3).map(|id| (id, free_port().to_string())).collect();
    let mut nodes: BTreeMap<NodeId, MetaQuorum> = BTreeMap::new();
    for id in 1..=3 {
        let q = MetaQuorum::start(config(id, &voters, dir.path()))
            .await
            .unwrap();
        nodes.insert(id, q);
    }
    let mut leader = None;
    wait_until("one leader is agreed", Duration::from_secs(10), || {
        let seen: Vec<Option<NodeId>> = nodes.values().map(|q| q.leader()).collect();
        leader = seen[0];
        leader.is_some() && seen.iter().all(|l| *l == leader)
    })
    .await;
    let first = leader.unwrap();
    assert_eq!(nodes.values().filter(|q| q.is_leader()).count(), 1);
    for i in 0..20 {
        nodes[&first]
            .write(vec![topic(&format!("a{i}"))])
            .await
            .unwrap();
    }
    wait_until(
        "every voter applied the writes",
        Duration::from_secs(10),
        || nodes.values().all(|q| q.image().topics().count() == 20),
    )
    .await;
    let term_before = nodes[&first].term();

    nodes.remove(&first).unwrap().shutdown().await;
    let mut second = None;
    wait_until(
        "the two left elect a new leader",
        Duration::from_secs(10),
        || {
            second = nodes
                .values()
                .find(|q| q.is_leader())
                .and_then(|q| q.leader());
            second.is_some()
        },
    )
    .await;
    let second = second.unwrap();
    assert_ne!(second, first);
    assert!(nodes[&second].term() > term_before, "terms only grow");
    for i in 0..20 {
        nodes[&second]
            .write(vec![topic(&format!("b{i}"))])
            .await
            .unwrap();
    }
    let follower = *nodes.keys().find(|id| **id != second).unwrap();
    wait_until(
        "the follower knows the leader",
        Duration::from_secs(5),
        || nodes[&follower].leader() == Some(second),
    )
    .await;
    match nodes[&follower].write(vec![topic("nope")]).await {
        Err(QuorumError::NotLeader { leader }) => assert_eq!(leader, Some(second)),
        other => panic!("a follower accepted a write: {other:?}"),
    }

    let back = restart(config(first, &voters, dir.path())).await;
    nodes.insert(first, back);
    wait_until(
        "the returning voter catches up",
        Duration::from_secs(15),
        || nodes.values().all(|q| q.image().topics().count() == 40),
    )
    .await;
    assert!(nodes[&first].image().topic("nope").is_none());
    for (_, q) in nodes {
        q.shutdown().await;
    }
}

/// A torn write at the end of the Raft log (a crash mid-append) is cut on open; what was
/// acknowledged before it stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_of_the_raft_log_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = QuorumConfig::single(1, free_port(), dir.path().join("raft"));
    let q = MetaQuorum::start(cfg.clone()).await.unwrap();
    q.wait_for_leader(Duration::from_secs(5)).await;
    for i in 0..3 {
        q.write(vec![topic(&format!("t{i}"))]).await.unwrap();
    }
    q.shutdown().await;
    let log = dir.path().join("raft/log");
    let good = std::fs::metadata(&log).unwrap().len();
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    std::io::Write::write_all(&mut f, &[0, 0, 1, 0, 9, 9, 9, 9, b'{', b'"']).unwrap();
    drop(f);
    let q = restart(cfg).await;
    q.wait_for_leader(Duration::from_secs(5)).await;
    // The junk is gone: the file is intact frames to its end, beginning with the good ones.
    let raw = std::fs::read(&log).unwrap();
    assert_eq!(crate::framing::intact_frames(&raw, usize::MAX).1, raw.len());
    assert!(raw.len() as u64 >= good);
    wait_until(
        "the intact entries are replayed",
        Duration::from_secs(5),
        || q.image().topics().count() == 3,
    )
    .await;
    q.write(vec![topic("t3")]).await.unwrap();
    assert_eq!(q.image().topics().count(), 4);
    q.shutdown().await;
}

fn register(id: BrokerId) -> crate::ControllerOp {
    crate::ControllerOp::RegisterBroker {
        broker_id: id,
        host: "127.0.0.1".into(),
        port: 9000 + id.get(),
        endpoints: vec![],
        rack: None,
        incarnation: uuid::Uuid::from_u128(id.get() as u128 + 1),
        previous_broker_epoch: None,
    }
}

/// Brokers reach the active controller through any voter; a broker that stops heartbeating is
/// fenced and its leaderships move to the ISR with a higher epoch; losing the active controller
/// elects another that keeps accepting operations, with fresh sessions for every broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_fences_silent_brokers_and_survives_its_own_loss() {
    use crate::{ControllerOp, CreateTopic, Outcome};
    let dir = tempfile::tempdir().unwrap();
    let voters: BTreeMap<NodeId, String> =
        (1..=3).map(|id| (id, free_port().to_string())).collect();
    let mut nodes = BTreeMap::new();
    for id in voters.keys() {
        let mut cfg = config(*id, &voters, dir.path());
        cfg.session_timeout = Duration::from_millis(800);
        nodes.insert(*id, MetaQuorum::start(cfg).await.unwrap());
    }
    // A client with no voter of its own, as a broker-only process has.
    let remote = ControllerClient::new(voters.clone(), None, Duration::from_secs(10));
    for b in 0..3 {
        remote.call(register(BrokerId(b))).await.unwrap();
    }
    let reply = remote
        .call(ControllerOp::CreateTopic {
            request: CreateTopic {
                name: "t".into(),
                num_partitions: 3,
                replication_factor: 3,
                ..Default::default()
            },
            default_partitions: 1,
            default_replication_factor: 1,
            validate_only: false,
        })
        .await
        .unwrap();
    assert!(matches!(reply.outcome, Outcome::TopicId(_)));
    // Brokers 0 and 1 keep heartbeating; broker 2 falls silent.
    let beating = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let heartbeats = tokio::spawn({
        let beating = beating.clone();
        let voters = voters.clone();
        async move {
            let client = ControllerClient::new(voters, None, Duration::from_secs(10));
            while beating.load(std::sync::atomic::Ordering::Relaxed) {
                for b in 0..2 {
                    let _ = client
                        .call(ControllerOp::Heartbeat {
                            broker_id: BrokerId(b),
                        })
                        .await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    let image_of = |nodes: &BTreeMap<NodeId, MetaQuorum>| {
        nodes
            .values()
            .map(|q| q.image())
            .max_by_key(|i| i.version)
            .unwrap()
    };
    wait_until("broker 2 is fenced", Duration::from_secs(10), || {
        !image_of(&nodes).is_live(BrokerId(2))
    })
    .await;
    let image = image_of(&nodes);
    for p in image.topic("t").unwrap().partitions.values() {
        assert_ne!(p.leader, Some(BrokerId(2)), "{p:?}");
        assert!(!p.isr.contains(&BrokerId(2)), "{p:?}");
        assert!(p.leader.is_some_and(|l| p.isr.contains(&l)));
        if p.replicas[0] == BrokerId(2) {
            assert_eq!(p.leader_epoch, LeaderEpoch(1), "{p:?}");
        }
    }

    let active = nodes.values().find(|q| q.is_leader()).unwrap().node_id();
    nodes.remove(&active).unwrap().shutdown().await;
    let reply = remote
        .call(ControllerOp::CreateTopic {
            request: CreateTopic {
                name: "after".into(),
                num_partitions: 2,
                replication_factor: 2,
                ..Default::default()
            },
            default_partitions: 1,
            default_replication_factor: 1,
            validate_only: false,
        })
        .await
        .unwrap();
    assert!(matches!(reply.outcome, Outcome::TopicId(_)));
    // Live brokers kept heartbeating through the failover and were not fenced by the new one.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let image = image_of(&nodes);
    assert!(
        image.is_live(BrokerId(0)) && image.is_live(BrokerId(1)),
        "{:?}",
        image.brokers
    );
    // Broker 2 comes back and is unfenced.
    remote
        .call(ControllerOp::Heartbeat {
            broker_id: BrokerId(2),
        })
        .await
        .unwrap();
    beating.store(false, std::sync::atomic::Ordering::Relaxed);
    heartbeats.await.unwrap();
    let image = image_of(&nodes);
    assert!(image.is_live(BrokerId(2)));
    for (_, q) in nodes {
        q.shutdown().await;
    }
}
