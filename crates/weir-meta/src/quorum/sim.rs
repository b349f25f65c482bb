//! Seeded simulations of the controller under faults, on turmoil's simulated network and clock.
//!
//! Three voters (each with its own broker, as in a default `weir server` cluster) and two
//! broker-only hosts (following the image by polling, as `--roles broker` does) run the real
//! quorum code: openraft, our log storage on disk, the active controller, broker registration
//! and heartbeats. An admin client creates topics the whole
//! time. A nemesis driven by the seed crashes and restarts voters (their disks survive), cuts
//! links between hosts and holds messages on them; in the last part of the run every fault is
//! healed. Every host reports what it sees, and checkers then prove:
//! - at most one voter is the active controller in any Raft term (KRaft's controller epoch);
//! - every node (voter or broker-only) that holds a given metadata version holds the same image;
//! - along the metadata log, no partition's leader epoch ever falls;
//! - in every image, a partition's leader is a member of its ISR (or there is no leader);
//! - every topic creation the controller acknowledged is in the final image of every voter;
//! - after healing, one controller is active, every node ends on the same image, and every
//!   broker is live.
//!
//! The fault schedule follows from the seed. Task interleaving inside a host also depends on
//! tokio's own random choices (`select!`), which turmoil seeds only under `--cfg tokio_unstable`,
//! so a failing seed is very likely, not certain, to fail again the same way.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failure is a test failure

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use uuid::Uuid;
use weir_types::{BrokerId, LeaderEpoch};

use super::transport::Net;
use super::{ControllerClient, MetaQuorum, MetadataFollower, NodeId, QuorumConfig};
use crate::controller::{ControllerOp, CreateTopic, Outcome};
use crate::image::MetadataImage;
use crate::MetaError;

const PORT: u16 = 9093;
const VOTERS: [NodeId; 3] = [1, 2, 3];
/// Broker-only hosts (no voter).
const BROKERS_ONLY: [i32; 2] = [4, 5];
const HEARTBEAT: Duration = Duration::from_millis(300);
const SESSION_TIMEOUT: Duration = Duration::from_secs(2);
/// Faults happen before this much simulated time; the rest of the run is healed.
const CHAOS: Duration = Duration::from_secs(40);
const RUN: Duration = Duration::from_secs(60);

fn host(id: impl std::fmt::Display) -> String {
    format!("n{id}")
}

/// What the hosts report, in the order they saw it.
#[derive(Default)]
struct History {
    /// (term, voter) for each voter that saw itself lead in that term.
    leaders: BTreeSet<(u64, NodeId)>,
    /// Every image a voter applied, by voter.
    images: BTreeMap<NodeId, Vec<Arc<MetadataImage>>>,
    /// Topics whose creation the controller acknowledged.
    acked_topics: Vec<(String, Uuid)>,
    /// How many creations failed (no controller, timeouts): expected during faults.
    failed_creations: usize,
}

type Shared = Arc<Mutex<History>>;

/// A small, seeded generator (splitmix64) for the nemesis.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn voters() -> BTreeMap<NodeId, String> {
    VOTERS
        .iter()
        .map(|id| (*id, format!("{}:{PORT}", host(id))))
        .collect()
}

/// Registers broker `id` and heartbeats until the host stops, registering again when the
/// controller has no record of it.
async fn run_broker(id: i32, client: ControllerClient) {
    let register = ControllerOp::RegisterBroker {
        broker_id: BrokerId(id),
        host: host(id),
        port: 9092,
        endpoints: vec![],
        rack: None,
        incarnation: uuid::Uuid::from_u128(id as u128 + 1),
        previous_broker_epoch: None,
    };
    let mut registered = false;
    loop {
        let op = if registered {
            ControllerOp::Heartbeat {
                broker_id: BrokerId(id),
            }
        } else {
            register.clone()
        };
        match client.call(op).await {
            Ok(_) => registered = true,
            Err(MetaError::UnknownBroker(_)) => registered = false,
            Err(_) => {}
        }
        tokio::time::sleep(HEARTBEAT).await;
    }
}

/// One voter and its broker; reports leadership and every applied image.
async fn run_voter(id: NodeId, dir: PathBuf, history: Shared) -> turmoil::Result {
    let config = QuorumConfig {
        node_id: id,
        listener: SocketAddr::from((Ipv4Addr::UNSPECIFIED, PORT)),
        voters: voters(),
        dir,
        heartbeat_interval: Duration::from_millis(100),
        snapshot_every: 20,
        session_timeout: SESSION_TIMEOUT,
        unclean_default: false,
        tls: None,
    };
    let quorum = MetaQuorum::start_on(config, Net::Sim).await?;
    let mut metrics = quorum.metrics();
    let watch_leader = {
        let history = history.clone();
        async move {
            loop {
                let (term, leader) = {
                    let m = metrics.borrow_and_update();
                    (m.current_term, m.current_leader)
                };
                if leader == Some(id) {
                    history.lock().unwrap().leaders.insert((term, id));
                }
                if metrics.changed().await.is_err() {
                    return;
                }
            }
        }
    };
    let watch_images = record_images(id, quorum.subscribe(), history.clone());
    let broker = run_broker(id as i32, quorum.client(Duration::from_secs(3)));
    tokio::join!(watch_leader, watch_images, broker);
    Ok(())
}

/// Reports every image node `id` applies (a voter) or receives (a broker-only follower).
async fn record_images(
    id: NodeId,
    mut images: tokio::sync::watch::Receiver<Arc<MetadataImage>>,
    history: Shared,
) {
    loop {
        let image = images.borrow_and_update().clone();
        if image.version > 0 {
            history
                .lock()
                .unwrap()
                .images
                .entry(id)
                .or_default()
                .push(image);
        }
        if images.changed().await.is_err() {
            return;
        }
    }
}

/// Creates a topic every 700 ms until the faults end, then one more that must succeed.
async fn run_admin(history: Shared) -> turmoil::Result {
    let client = ControllerClient::new(voters(), None, Duration::from_secs(3)).over(Net::Sim);
    let create = |name: &str| ControllerOp::CreateTopic {
        request: CreateTopic {
            name: name.to_string(),
            num_partitions: 3,
            replication_factor: 3,
            ..Default::default()
        },
        default_partitions: 1,
        default_replication_factor: 1,
        validate_only: false,
    };
    let mut i = 0;
    while turmoil::elapsed() < CHAOS {
        i += 1;
        match client.call(create(&format!("t{i}"))).await {
            Ok(reply) => {
                if let Outcome::TopicId(id) = reply.outcome {
                    history
                        .lock()
                        .unwrap()
                        .acked_topics
                        .push((format!("t{i}"), id));
                }
            }
            Err(_) => history.lock().unwrap().failed_creations += 1,
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    // Healed: the controller must come back and take work within a few seconds.
    let deadline = turmoil::elapsed() + Duration::from_secs(10);
    let name = "after-healing".to_string();
    loop {
        let op = create(&name);
        match client.call(op).await {
            Ok(reply) => {
                if let Outcome::TopicId(id) = reply.outcome {
                    history.lock().unwrap().acked_topics.push((name, id));
                }
                break;
            }
            Err(MetaError::TopicAlreadyExists(_)) => break,
            Err(e) if turmoil::elapsed() > deadline => {
                return Err(format!("no controller took work after healing: {e}").into())
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    // Let the brokers heartbeat back in before the run ends.
    tokio::time::sleep(RUN - turmoil::elapsed().min(RUN)).await;
    Ok(())
}

/// Repairs every cut link and releases every held one.
fn heal_links(
    sim: &turmoil::Sim<'_>,
    cut: &mut Vec<(String, String)>,
    held: &mut Vec<(String, String)>,
) {
    for (a, b) in cut.drain(..) {
        sim.repair(a.as_str(), b.as_str());
    }
    for (a, b) in held.drain(..) {
        sim.release(a.as_str(), b.as_str());
    }
}

/// What the nemesis did, for the failure message.
type Log = Rc<RefCell<Vec<String>>>;

fn simulate(seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let history: Shared = Arc::default();
    let mut sim = turmoil::Builder::new()
        .simulation_duration(RUN + Duration::from_secs(30))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(20))
        // Connections attempted over a held link all arrive when it is released; turmoil
        // panics where a kernel would drop SYNs past the backlog, so give it room.
        .tcp_capacity(1 << 16)
        .rng_seed(seed)
        .build();
    for id in VOTERS {
        let path = dir.path().join(host(id));
        let history = history.clone();
        sim.host(host(id), move || {
            run_voter(id, path.clone(), history.clone())
        });
    }
    for id in BROKERS_ONLY {
        let history = history.clone();
        sim.host(host(id), move || {
            let history = history.clone();
            async move {
                let client =
                    ControllerClient::new(voters(), None, Duration::from_secs(3)).over(Net::Sim);
                let follower = MetadataFollower::start_on(voters(), Net::Sim);
                let watch = record_images(id as NodeId, follower.subscribe(), history);
                tokio::join!(run_broker(id, client), watch);
                Ok(())
            }
        });
    }
    sim.client("admin", run_admin(history.clone()));

    let mut rng = Rng(seed);
    let log: Log = Rc::default();
    let mut crashed: BTreeSet<NodeId> = BTreeSet::new();
    let mut cut: Vec<(String, String)> = Vec::new();
    let mut held: Vec<(String, String)> = Vec::new();
    let mut next_fault = Duration::from_secs(3);
    let mut healed = false;
    loop {
        let now = sim.elapsed();
        if now >= next_fault && now < CHAOS {
            next_fault = now + Duration::from_millis(500 + rng.below(2500));
            let all: Vec<String> = VOTERS
                .iter()
                .map(host)
                .chain(BROKERS_ONLY.iter().map(host))
                .collect();
            let a = all[rng.below(all.len() as u64) as usize].clone();
            let b = all[rng.below(all.len() as u64) as usize].clone();
            // The newest controller known: crashing it forces an election.
            let leader = history.lock().unwrap().leaders.last().map(|(_, id)| *id);
            match rng.below(7) {
                // Crash a voter (half the time the active controller); at most two are down.
                0 | 1 if crashed.len() < 2 => {
                    let v = match leader {
                        Some(l) if rng.below(2) == 0 => l,
                        _ => VOTERS[rng.below(3) as usize],
                    };
                    if crashed.insert(v) {
                        sim.crash(host(v));
                        log.borrow_mut().push(format!("{now:?} crash {}", host(v)));
                    }
                }
                2 | 3 => {
                    if let Some(v) = crashed.iter().next().copied() {
                        crashed.remove(&v);
                        sim.bounce(host(v));
                        log.borrow_mut()
                            .push(format!("{now:?} restart {}", host(v)));
                    }
                }
                4 if a != b => {
                    sim.partition(a.as_str(), b.as_str());
                    log.borrow_mut().push(format!("{now:?} cut {a} <-> {b}"));
                    cut.push((a, b));
                }
                5 if a != b => {
                    sim.hold(a.as_str(), b.as_str());
                    log.borrow_mut().push(format!("{now:?} hold {a} <-> {b}"));
                    held.push((a, b));
                }
                _ => {
                    heal_links(&sim, &mut cut, &mut held);
                    log.borrow_mut().push(format!("{now:?} heal links"));
                }
            }
        }
        if now >= CHAOS && !healed {
            healed = true;
            heal_links(&sim, &mut cut, &mut held);
            for v in std::mem::take(&mut crashed) {
                sim.bounce(host(v));
            }
            log.borrow_mut().push(format!("{now:?} heal everything"));
        }
        match sim.step() {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => panic!("seed {seed}: {e}\nfaults:\n{}", log.borrow().join("\n")),
        }
    }
    let faults = log.borrow().join("\n");
    check(seed, &history.lock().unwrap(), &faults);
}

fn check(seed: u64, h: &History, faults: &str) {
    let ctx = || format!("seed {seed}; faults:\n{faults}");

    // At most one active controller per term.
    let mut by_term: BTreeMap<u64, Vec<NodeId>> = BTreeMap::new();
    for (term, id) in &h.leaders {
        by_term.entry(*term).or_default().push(*id);
    }
    for (term, ids) in &by_term {
        assert!(
            ids.len() == 1,
            "term {term} had controllers {ids:?}; {}",
            ctx()
        );
    }
    assert!(!by_term.is_empty(), "no controller ever; {}", ctx());

    // Voters agree on the image of each version (a restarted voter applies its log again from
    // its snapshot: each image must still match what the others applied at that version).
    let mut by_version: BTreeMap<u64, (NodeId, Arc<MetadataImage>)> = BTreeMap::new();
    for (id, images) in &h.images {
        for image in images {
            match by_version.get(&image.version) {
                Some((other, seen)) => assert!(
                    **seen == **image,
                    "nodes {other} and {id} differ at version {}; {}",
                    image.version,
                    ctx()
                ),
                None => {
                    by_version.insert(image.version, (*id, image.clone()));
                }
            }
        }
    }

    // Along the log, epochs never fall; a leader is always in its ISR.
    let mut epochs: BTreeMap<(Uuid, i32), LeaderEpoch> = BTreeMap::new();
    for (version, (_, image)) in &by_version {
        for topic in image.topics() {
            for (p, state) in &topic.partitions {
                if let Some(leader) = state.leader {
                    assert!(
                        state.isr.contains(&leader),
                        "version {version}: {}-{p} led by {leader} outside its ISR {:?}; {}",
                        topic.name,
                        state.isr,
                        ctx()
                    );
                }
                assert!(!state.isr.is_empty(), "empty ISR; {}", ctx());
                let seen = epochs
                    .entry((topic.topic_id, *p))
                    .or_insert(state.leader_epoch);
                assert!(
                    state.leader_epoch >= *seen,
                    "version {version}: {}-{p} epoch fell from {seen} to {}; {}",
                    topic.name,
                    state.leader_epoch,
                    ctx()
                );
                *seen = state.leader_epoch;
            }
        }
    }

    // The end: every voter at the same image, holding every acknowledged topic, every broker
    // live.
    let finals: Vec<(NodeId, &Arc<MetadataImage>)> = VOTERS
        .iter()
        .copied()
        .chain(BROKERS_ONLY.iter().map(|b| *b as NodeId))
        .map(|id| {
            let last = h.images.get(&id).and_then(|v| v.last());
            (id, last.expect("a node reported no image"))
        })
        .collect();
    let (_, first) = finals[0];
    for (id, image) in &finals {
        assert!(
            image.version == first.version,
            "node {id} ended at version {} but node {} at {}; {}",
            image.version,
            finals[0].0,
            first.version,
            ctx()
        );
    }
    for (name, id) in &h.acked_topics {
        let t = first.topic(name);
        assert!(
            t.is_some_and(|t| t.topic_id == *id),
            "acknowledged topic {name} is missing at the end; {}",
            ctx()
        );
    }
    for b in VOTERS
        .iter()
        .map(|v| *v as i32)
        .chain(BROKERS_ONLY)
        .map(BrokerId)
    {
        assert!(
            first.is_live(b),
            "broker {b} is not live after healing: {:?}; {}",
            first.brokers.get(&b),
            ctx()
        );
    }
    eprintln!(
        "seed {seed}: {} terms, {} versions, {} topics acknowledged, {} creations failed under faults",
        by_term.len(),
        by_version.len(),
        h.acked_topics.len(),
        h.failed_creations
    );
}

/// Seeds to run: `WEIR_SIM_SEEDS` (comma-separated) or a fixed set.
fn seeds() -> Vec<u64> {
    match std::env::var("WEIR_SIM_SEEDS") {
        Ok(s) => s.split(',').filter_map(|x| x.trim().parse().ok()).collect(),
        Err(_) => vec![1, 2, 3, 4],
    }
}

/// Loses the active controller for good and returns how long the two survivors took to elect
/// another, or `None` if they never did within `limit`.
fn failover(seed: u64, limit: Duration) -> Option<Duration> {
    let dir = tempfile::tempdir().unwrap();
    let history: Shared = Arc::default();
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(60) + limit)
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(5))
        .rng_seed(seed)
        .build();
    for id in VOTERS {
        let path = dir.path().join(host(id));
        let history = history.clone();
        sim.host(host(id), move || {
            run_voter(id, path.clone(), history.clone())
        });
    }
    // The simulation ends when its clients do: this one outlasts the test.
    sim.client("clock", async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(())
    });
    let mut lost: Option<(u64, Duration)> = None;
    loop {
        let newest = history.lock().unwrap().leaders.last().copied();
        match (lost, newest) {
            (None, Some((term, leader))) => {
                sim.crash(host(leader));
                eprintln!(
                    "seed {seed}: {:?} crash n{leader} (term {term})",
                    sim.elapsed()
                );
                lost = Some((term, sim.elapsed()));
            }
            (Some((old, at)), Some((term, _))) if term > old => return Some(sim.elapsed() - at),
            (Some((_, at)), _) if sim.elapsed() - at > limit => return None,
            _ => {}
        }
        match sim.step() {
            Ok(false) => {}
            Ok(true) | Err(_) => return None,
        }
    }
}

/// Two voters left of three are a quorum and must elect a controller, whatever their clocks. Both
/// time out on the same tick after the controller dies; if each then kept the election timeout it
/// drew at start, two equal draws would split the vote in every term, forever (openraft 0.9 drew
/// once per process; see vendor/openraft/WEIR-PATCHES.md).
#[test]
fn survivors_elect_a_new_controller() {
    let mut stuck = Vec::new();
    for seed in 1..=12 {
        let took = failover(seed, Duration::from_secs(20));
        eprintln!("seed {seed}: new controller after {took:?}");
        if took.is_none() {
            stuck.push(seed);
        }
    }
    assert!(
        stuck.is_empty(),
        "seeds {stuck:?}: the voters elected no controller within 20 s"
    );
}

#[test]
fn controller_under_crashes_and_partitions() {
    for seed in seeds() {
        simulate(seed);
    }
}
