//! Seeded simulations of partition replication, with the fault-injection suite's checkers.
//!
//! Three brokers hold one partition (RF=3, `min.insync.replicas=2`) with the real code of every
//! part that decides what is kept: each broker's [`ReplicaManager`] and logs on disk, the
//! leader's high watermark and ISR proposals ([`replication`]), the follower's truncation and
//! fetch handling ([`fetcher`]), and the controller's planner and elections (`weir-meta`). The
//! simulation stands in for the network and the clock: one step is 10 ms of simulated time;
//! fetch answers and ISR changes arrive after seeded delays. Each broker's disk is a
//! [`SimDisk`], which keeps what was fsynced apart from what was only written. A seeded nemesis:
//! - crashes and restarts brokers (`kill -9`: the page cache survives);
//! - cuts the power of one broker, or of all three at once: each disk keeps what was fsynced,
//!   plus a torn prefix or a scrambled part of the rest ([`PowerLoss`]);
//! - fills a broker's disk for a while (ENOSPC), or fails an fsync with EIO (the log directory
//!   fails; the broker goes down and its unsynced pages are lost, as the kernel drops them);
//! - cuts links, including a broker's link to the controller (its heartbeats stop and it is
//!   fenced).
//!
//! A producer writes unique values to
//! whichever broker leads in its own view, with acks=all; a consumer reads the leader up to its
//! high watermark. In the first test the topic is durable (`write.caching=false`), so
//! acknowledged records must survive every one of these faults; in the second it caches writes
//! (`write.caching=true`), and the nemesis cuts the power only once, of one broker, and fails no
//! fsync: what was acknowledged is then still in another ISR member's page cache. After healing,
//! the checkers prove:
//! - every acknowledged record is in the final log at the offset acknowledged;
//! - every record the consumer saw is in the final log at the offset it saw it;
//! - the three replicas' logs are byte for byte the same;
//! - along the metadata log, leader epochs never fall and a leader is always in its ISR;
//! - the ISR is full again and records were acknowledged (the system made progress).
//!
//! Everything is single-threaded and driven by the seed, so a failing seed fails again.
//! `WEIR_REPL_SIM_SEEDS=1,2,...` picks seeds (default 1-6).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failure is a test failure

mod checks;
mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::PartitionData;
use weir_log::simfs::{Failure, Fault, FsOp, PowerLoss};
use weir_log::SimDisk;
use weir_meta::{ControllerOp, CreateTopic, MetadataImage};
use weir_types::{BrokerId, LeaderEpoch, Offset};

use crate::fetcher;
use crate::partition::FetchAsk;
use crate::replica_manager::{Clock, Partition, ReplicaManager};
use crate::replication;
use harness::{batch, log_bytes, records_of, refuses, Controller, Rng};

/// Files of a broker's logs open at once (`log.max.open.files`).
const SIM_OPEN_FILES: usize = 8;
const TOPIC: &str = "t";
const NODES: [BrokerId; 3] = [BrokerId(1), BrokerId(2), BrokerId(3)];
/// The controller, as an end of a link.
const CONTROLLER: BrokerId = BrokerId(0);
const STEP: Duration = Duration::from_millis(10);
const SESSION_STEPS: u64 = 40;
const MAX_LAG: Duration = Duration::from_millis(300);
const CHAOS_STEPS: u64 = 3_000;
const QUIET_STEPS: u64 = 2_000;

/// Where each broker keeps its data, on its own disk.
const DATA_DIR: &str = "/data";

struct Node {
    id: BrokerId,
    disk: SimDisk,
    /// `None` while crashed.
    replicas: Option<ReplicaManager>,
    seen_version: u64,
    restart_at: u64,
    fetch_in_flight: bool,
}

impl Node {
    fn partition(&self) -> Option<Arc<Partition>> {
        self.replicas.as_ref()?.get(TOPIC, 0)
    }
}

enum Msg {
    FetchAnswer {
        to: BrokerId,
        leader: BrokerId,
        epoch: LeaderEpoch,
        data: PartitionData,
    },
    /// An ISR change from `from`'s partition (the instance that asked: a restarted broker's new
    /// one must not take its answer).
    AlterIsr {
        from: BrokerId,
        partition: Arc<Partition>,
        op: ControllerOp,
        generation: u64,
    },
    /// The controller's answer to an ISR change (`None`: made), or a timeout when the request or
    /// the answer was lost.
    AlterAnswer {
        to: BrokerId,
        partition: Arc<Partition>,
        generation: u64,
        error: Option<weir_meta::MetaError>,
    },
}

struct Sim {
    rng: Rng,
    ticks: Arc<AtomicU64>,
    base: Instant,
    step: u64,
    controller: Controller,
    nodes: Vec<Node>,
    cut: BTreeSet<(BrokerId, BrokerId)>,
    heal_at: Vec<(u64, (BrokerId, BrokerId))>,
    queue: Vec<(u64, Msg)>,
    next_value: u64,
    /// acks=all produces waiting: (node, epoch, offset, value).
    pending: Vec<(BrokerId, LeaderEpoch, Offset, u64)>,
    acked: BTreeMap<u64, Offset>,
    seen: BTreeMap<Offset, u64>,
    faults: Vec<String>,
    defaults: BTreeMap<String, String>,
    /// Steps at which a full disk gets its space back: (step, node).
    space_at: Vec<(u64, BrokerId)>,
    /// `write.caching=true`: acknowledged records are in page caches only, so they survive a
    /// power cut of one broker but not of every one; the nemesis cuts the power once, of one
    /// broker, and fails no fsync (which loses pages as a power cut does).
    caching: bool,
    /// Every broker's cache of open files, to count how often they reopened a file.
    file_caches: std::sync::Mutex<Vec<weir_log::FileCache>>,
}

impl Sim {
    fn new(seed: u64, caching: bool) -> Sim {
        let ticks = Arc::new(AtomicU64::new(0));
        let base = Instant::now();
        let mut controller = Controller {
            image: MetadataImage::default(),
            history: Vec::new(),
            last_heartbeat: BTreeMap::new(),
        };
        for id in NODES {
            controller
                .run(ControllerOp::RegisterBroker {
                    broker_id: id,
                    host: format!("n{id}"),
                    port: 9092,
                    endpoints: vec![],
                    rack: None,
                    incarnation: uuid::Uuid::new_v4(),
                    previous_broker_epoch: None,
                })
                .unwrap();
            controller.last_heartbeat.insert(id, 0);
        }
        controller
            .run(ControllerOp::CreateTopic {
                request: CreateTopic {
                    name: TOPIC.into(),
                    num_partitions: -1,
                    replication_factor: -1,
                    assignments: vec![(0, NODES.to_vec())],
                    // Small segments: rolls (new files, directory syncs) happen all the time.
                    configs: vec![
                        ("min.insync.replicas".into(), "2".into()),
                        ("segment.bytes".into(), "1024".into()),
                        ("write.caching".into(), caching.to_string()),
                    ],
                },
                default_partitions: 1,
                default_replication_factor: 3,
                validate_only: false,
            })
            .unwrap();
        let mut sim = Sim {
            rng: Rng::seeded(seed),
            ticks,
            base,
            step: 0,
            controller,
            nodes: Vec::new(),
            cut: BTreeSet::new(),
            heal_at: Vec::new(),
            queue: Vec::new(),
            next_value: 0,
            pending: Vec::new(),
            acked: BTreeMap::new(),
            seen: BTreeMap::new(),
            faults: Vec::new(),
            file_caches: Default::default(),
            defaults: BTreeMap::new(),
            space_at: Vec::new(),
            caching,
        };
        for id in NODES {
            let disk = SimDisk::new(seed * 10 + id.0 as u64);
            let replicas = sim.open(id, &disk);
            sim.nodes.push(Node {
                id,
                disk,
                replicas: Some(replicas),
                seen_version: 0,
                restart_at: 0,
                fetch_in_flight: false,
            });
        }
        sim
    }

    fn open(&self, id: BrokerId, disk: &SimDisk) -> ReplicaManager {
        let ticks = self.ticks.clone();
        let base = self.base;
        let clock = Clock::new(move || base + STEP * ticks.load(Ordering::Relaxed) as u32);
        // Few open files, so logs keep reopening theirs, as a broker with many partitions does.
        let cache = weir_log::FileCache::new(disk.storage(), SIM_OPEN_FILES);
        if let Ok(mut caches) = self.file_caches.lock() {
            caches.push(cache.clone());
        }
        ReplicaManager::on_storage(Arc::new(cache), Path::new(DATA_DIR), id, clock)
    }

    fn now(&self) -> Instant {
        self.base + STEP * self.step as u32
    }

    fn connected(&self, a: BrokerId, b: BrokerId) -> bool {
        !self.cut.contains(&(a.min(b), a.max(b)))
    }

    fn node(&self, id: BrokerId) -> &Node {
        &self.nodes[(id.0 - 1) as usize]
    }

    fn up(&self, id: BrokerId) -> bool {
        self.node(id).replicas.is_some()
    }

    fn nemesis(&mut self) {
        if self.step >= CHAOS_STEPS || !self.rng.chance(2) {
            return;
        }
        let victim = NODES[self.rng.below(3) as usize];
        let hold = 20 + self.rng.below(200);
        let down = self.nodes.iter().filter(|n| n.replicas.is_none()).count();
        let power_cuts = self
            .faults
            .iter()
            .filter(|f| f.contains("power cut"))
            .count();
        let may_cut_power = !self.caching || power_cuts == 0;
        match self.rng.below(12) {
            0..=2 if down < 2 => self.crash(victim, hold, None),
            3 | 4 if down < 2 && may_cut_power => {
                let loss = self.power_loss_mode();
                self.crash(victim, hold, Some(loss));
            }
            5 if !self.caching => {
                self.faults
                    .push(format!("{}: power cut of all brokers", self.step));
                for id in NODES {
                    let loss = self.power_loss_mode();
                    let hold = 20 + self.rng.below(200);
                    self.crash(id, hold, Some(loss));
                }
            }
            6 => {
                let node = &self.nodes[(victim.0 - 1) as usize];
                let used = node.disk.used_bytes();
                node.disk.set_capacity(Some(used));
                self.space_at.push((self.step + hold, victim));
                self.faults.push(format!(
                    "{}: n{victim}'s disk full for {hold} steps",
                    self.step
                ));
            }
            7 if !self.caching => {
                self.nodes[(victim.0 - 1) as usize].disk.fail(Fault {
                    op: FsOp::Sync,
                    path_contains: String::new(),
                    failure: Failure::Io,
                    times: 1,
                });
                self.faults
                    .push(format!("{}: n{victim}'s next fsync fails (EIO)", self.step));
            }
            8 | 9 => {
                self.cut_link(victim, CONTROLLER, hold);
            }
            10 | 11 => {
                let others: Vec<BrokerId> =
                    NODES.iter().copied().filter(|n| *n != victim).collect();
                let other = others[self.rng.below(2) as usize];
                self.cut_link(victim, other, hold);
            }
            _ => {}
        }
    }

    fn power_loss_mode(&mut self) -> PowerLoss {
        match self.rng.below(3) {
            0 => PowerLoss::DropUnsynced,
            1 => PowerLoss::TornTail,
            _ => PowerLoss::Scrambled,
        }
    }

    /// Takes a broker down for `hold` steps: a `kill -9` (its page cache survives) or, with
    /// `loss`, a power cut (its disk keeps what `loss` lets through of the unsynced writes).
    fn crash(&mut self, id: BrokerId, hold: u64, loss: Option<PowerLoss>) {
        let node = &mut self.nodes[(id.0 - 1) as usize];
        if node.replicas.is_none() && loss.is_none() {
            return;
        }
        node.replicas = None;
        node.fetch_in_flight = false;
        node.restart_at = node.restart_at.max(self.step + hold);
        match loss {
            None => self
                .faults
                .push(format!("{}: crash n{id} for {hold} steps", self.step)),
            Some(loss) => {
                let unsynced = node.disk.unsynced_bytes();
                node.disk.power_loss(loss);
                self.faults.push(format!(
                    "{}: power cut n{id} for {hold} steps ({loss:?}, {unsynced} unsynced bytes)",
                    self.step
                ));
            }
        }
    }

    /// A broker whose log directory failed (an fsync returned EIO) goes down; the kernel may
    /// have dropped the pages that fsync was to write, so they are lost.
    fn failed_disks(&mut self) {
        for id in NODES {
            let failed = self
                .node(id)
                .replicas
                .as_ref()
                .and_then(|r| r.failed_log_dir());
            if let Some(why) = failed {
                self.faults.push(format!(
                    "{}: n{id}'s log directory failed: {why}",
                    self.step
                ));
                let hold = 20 + self.rng.below(100);
                self.crash(id, hold, Some(PowerLoss::DropUnsynced));
            }
        }
    }

    fn cut_link(&mut self, a: BrokerId, b: BrokerId, hold: u64) {
        let key = (a.min(b), a.max(b));
        if self.cut.insert(key) {
            self.heal_at.push((self.step + hold, key));
            self.faults.push(format!(
                "{}: cut {}<->{} for {hold} steps",
                self.step, key.0, key.1
            ));
        }
    }

    fn heal(&mut self) {
        let step = self.step;
        let healed: Vec<(BrokerId, BrokerId)> = self
            .heal_at
            .iter()
            .filter(|(at, _)| *at <= step)
            .map(|(_, k)| *k)
            .collect();
        self.heal_at.retain(|(at, _)| *at > step);
        for key in healed {
            self.cut.remove(&key);
        }
        let freed: Vec<BrokerId> = self
            .space_at
            .iter()
            .filter(|(at, _)| *at <= step)
            .map(|(_, id)| *id)
            .collect();
        self.space_at.retain(|(at, _)| *at > step);
        for id in freed {
            self.nodes[(id.0 - 1) as usize].disk.set_capacity(None);
            self.faults
                .push(format!("{step}: n{id}'s disk has space again"));
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].replicas.is_none() && self.nodes[i].restart_at <= step {
                let id = self.nodes[i].id;
                let disk = self.nodes[i].disk.clone();
                let replicas = self.open(id, &disk);
                self.nodes[i].replicas = Some(replicas);
                self.nodes[i].seen_version = 0;
                self.faults.push(format!("{step}: restart n{id}"));
                if self.connected(id, CONTROLLER) {
                    let op = ControllerOp::RegisterBroker {
                        broker_id: id,
                        host: format!("n{id}"),
                        port: 9092,
                        endpoints: vec![],
                        rack: None,
                        incarnation: uuid::Uuid::new_v4(),
                        previous_broker_epoch: None,
                    };
                    self.controller.run(op).unwrap();
                    self.controller.last_heartbeat.insert(id, step);
                }
            }
        }
    }

    /// Heartbeats, fencing, and images reaching the brokers.
    fn metadata(&mut self) {
        for id in NODES {
            if self.up(id) && self.connected(id, CONTROLLER) {
                self.controller.last_heartbeat.insert(id, self.step);
                if !self.controller.image.is_live(id) {
                    let _ = self
                        .controller
                        .run(ControllerOp::Heartbeat { broker_id: id });
                }
            }
        }
        for id in NODES {
            let last = self
                .controller
                .last_heartbeat
                .get(&id)
                .copied()
                .unwrap_or(0);
            if self.controller.image.is_live(id) && self.step.saturating_sub(last) > SESSION_STEPS {
                self.controller.fence(id);
            }
        }
        let latest = Arc::new(self.controller.image.clone());
        for i in 0..self.nodes.len() {
            let id = self.nodes[i].id;
            let behind = self.nodes[i].seen_version < latest.version;
            if behind && self.connected(id, CONTROLLER) && self.rng.chance(50) {
                let Some(replicas) = &self.nodes[i].replicas else {
                    continue;
                };
                // A log that cannot be opened now (a full disk) is opened at a later image.
                if let Err(e) = replicas.sync(&latest, &self.defaults, true) {
                    self.faults
                        .push(format!("{}: n{id} cannot apply the image: {e}", self.step));
                    continue;
                }
                // Logs of partitions in recovery go to the controller, as the broker's metadata
                // follower sends them.
                let epoch = latest.brokers.get(&id).map_or(-1, |b| b.epoch);
                let logs = replicas.recovery_reports(&latest, epoch);
                self.nodes[i].seen_version = latest.version;
                if !logs.is_empty() {
                    let op = ControllerOp::ReportReplicaLogs {
                        broker_id: id,
                        broker_epoch: epoch,
                        logs,
                    };
                    let _ = self.controller.run(op);
                }
            }
        }
    }

    fn leaders(&mut self) {
        for id in NODES {
            let Some(p) = self.node(id).partition() else {
                continue;
            };
            if !p.is_leader(id) {
                continue;
            }
            if self.step < CHAOS_STEPS + QUIET_STEPS / 2 && self.rng.chance(40) {
                let value = self.next_value;
                self.next_value += 1;
                let mut bytes = batch(value);
                // A refused append (a full or failed disk) is never acknowledged.
                if let Ok(Some((info, epoch))) = p.append_as_leader(id, &mut bytes, 0) {
                    self.pending.push((id, epoch, info.last_offset, value));
                }
            }
            if let Some((op, generation)) = replication::propose_isr(&p, id, MAX_LAG, self.now()) {
                let at = self.step + 1 + self.rng.below(5);
                self.queue.push((
                    at,
                    Msg::AlterIsr {
                        from: id,
                        partition: p.clone(),
                        op,
                        generation,
                    },
                ));
            }
        }
    }

    fn followers(&mut self) {
        for id in NODES {
            let Some(p) = self.node(id).partition() else {
                continue;
            };
            let Some(leader) = p.leader().filter(|l| *l != id) else {
                continue;
            };
            if self.node(id).fetch_in_flight {
                continue;
            }
            let Some(lp) = self.node(leader).partition() else {
                continue;
            };
            if !self.connected(id, leader) || !self.rng.chance(70) {
                continue;
            }
            let epoch = p.leader_epoch();
            if refuses(&lp, leader, epoch) {
                continue;
            }
            if p.state().truncated_for_epoch != Some(epoch) {
                // OffsetForLeaderEpoch, answered at once.
                let latest = p.log().epochs().latest_epoch();
                let reconciled = match latest {
                    None => fetcher::reconcile_without_epochs(&p, epoch),
                    Some(latest) => {
                        let answer = {
                            let log = lp.log();
                            log.epochs().end_offset_for(latest, log.log_end_offset())
                        };
                        fetcher::reconcile_partition(&p, epoch, latest, answer)
                    }
                };
                // As the fetcher does: a truncation that failed (a failed disk) is logged and
                // the replica does not fetch; it is not reconciled.
                if let Err(e) = reconciled {
                    self.faults
                        .push(format!("{}: n{id} cannot truncate: {e}", self.step));
                }
                continue;
            }
            // As the fetcher does: what was copied is fsynced first, and a replica whose log is
            // not on its disk does not fetch, so the offset the leader counts is durable.
            crate::flusher::sync_all(id, std::slice::from_ref(&p));
            let offset = {
                let log = p.log();
                if log.durable_end() < log.log_end_offset() {
                    continue;
                }
                log.log_end_offset()
            };
            // The leader serves it as the fetch handler does.
            let ask = FetchAsk {
                fetch_offset: offset,
                current_leader_epoch: Some(epoch),
                follower: Some(id),
                record_progress: true,
                max_bytes: 1 << 16,
                first: true,
                read_committed: false,
            };
            let read = lp.read_for_fetch(leader, &ask, None);
            let mut bytes = Vec::new();
            for slice in read.slices.iter().flatten() {
                bytes.extend(slice.read_to_vec().unwrap());
            }
            let data = PartitionData::default()
                .with_error_code(read.error_code)
                .with_high_watermark(Offset::to_wire(read.high_watermark))
                .with_log_start_offset(Offset::to_wire(read.log_start_offset))
                .with_records(Some(Bytes::from(bytes)));
            let at = self.step + self.rng.below(4);
            self.nodes[(id.0 - 1) as usize].fetch_in_flight = true;
            self.queue.push((
                at,
                Msg::FetchAnswer {
                    to: id,
                    leader,
                    epoch,
                    data,
                },
            ));
        }
    }

    fn deliver(&mut self) {
        let step = self.step;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.queue)
            .into_iter()
            .partition(|(at, _)| *at <= step);
        self.queue = later;
        for (_, msg) in due {
            match msg {
                Msg::FetchAnswer {
                    to,
                    leader,
                    epoch,
                    data,
                } => {
                    self.nodes[(to.0 - 1) as usize].fetch_in_flight = false;
                    if !self.connected(to, leader) {
                        continue;
                    }
                    if let Some(p) = self.node(to).partition() {
                        fetcher::apply(&p, leader, epoch, &data);
                    }
                }
                Msg::AlterIsr {
                    from,
                    partition,
                    op,
                    generation,
                } => {
                    let (at, error) = if self.connected(from, CONTROLLER) {
                        let error = self.controller.run(op).err();
                        (self.step + 1 + self.rng.below(3), error)
                    } else {
                        // Lost on the way: the request times out.
                        (
                            self.step + 30,
                            Some(weir_meta::MetaError::Unavailable("timeout".into())),
                        )
                    };
                    self.queue.push((
                        at,
                        Msg::AlterAnswer {
                            to: from,
                            partition,
                            generation,
                            error,
                        },
                    ));
                }
                Msg::AlterAnswer {
                    to,
                    partition: p,
                    generation,
                    error,
                } => {
                    // An answer lost on the way back reads as a timeout.
                    let error = match error {
                        _ if !self.connected(to, CONTROLLER) => {
                            Some(weir_meta::MetaError::Unavailable("timeout".into()))
                        }
                        e => e,
                    };
                    match error {
                        None => replication::isr_request_done(&p, generation),
                        Some(e) => replication::isr_answered(&p, generation, &e, self.now()),
                    }
                }
            }
        }
    }

    /// Settles acks=all produces and lets the consumer read along.
    fn clients(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        for (id, epoch, offset, value) in pending {
            let Some(p) = self.node(id).partition() else {
                continue;
            };
            match p.replication_status(id, epoch, offset) {
                None => self.pending.push((id, epoch, offset, value)),
                Some(0) => {
                    self.acked.insert(value, offset);
                }
                Some(_) => {}
            }
        }
        if self.rng.chance(5) {
            for id in NODES {
                let Some(p) = self.node(id).partition() else {
                    continue;
                };
                if p.is_leader(id) {
                    let hw = p.high_watermark();
                    for (offset, value) in records_of(&log_bytes(&p, hw)) {
                        let before = self.seen.insert(offset, value);
                        assert!(
                            before.is_none_or(|v| v == value),
                            "the consumer read offset {offset} as {value}, earlier as {before:?}"
                        );
                    }
                }
            }
        }
        if self.step.is_multiple_of(20) {
            for node in &self.nodes {
                if let Some(r) = &node.replicas {
                    r.checkpoint_high_watermarks();
                }
            }
        }
    }

    fn run(&mut self) {
        while self.step < CHAOS_STEPS + QUIET_STEPS {
            self.ticks.store(self.step, Ordering::Relaxed);
            if self.step == CHAOS_STEPS {
                self.cut.clear();
                self.heal_at.clear();
                for node in &self.nodes {
                    node.disk.set_capacity(None);
                    node.disk.clear_faults();
                }
                self.space_at.clear();
                for node in &mut self.nodes {
                    node.restart_at = node.restart_at.min(CHAOS_STEPS);
                }
                self.faults.push(format!("{}: heal everything", self.step));
            }
            self.nemesis();
            self.failed_disks();
            self.heal();
            self.metadata();
            self.leaders();
            self.flushes();
            self.followers();
            self.deliver();
            self.clients();
            self.step += 1;
        }
    }

    /// The group commit of durable appends, which a broker's flush thread runs.
    fn flushes(&mut self) {
        for node in &self.nodes {
            if let Some(replicas) = &node.replicas {
                replicas.flush_pending();
            }
        }
    }
}

fn seeds() -> Vec<u64> {
    match std::env::var("WEIR_REPL_SIM_SEEDS") {
        Ok(s) => s.split(',').filter_map(|x| x.trim().parse().ok()).collect(),
        Err(_) => (1..=6).collect(),
    }
}

#[test]
fn no_acknowledged_record_lost_under_crashes_and_partitions() {
    for seed in seeds() {
        let mut sim = Sim::new(seed, false);
        sim.run();
        sim.check(seed);
    }
}

#[test]
fn with_write_caching_one_power_cut_loses_nothing_acknowledged() {
    for seed in seeds() {
        let mut sim = Sim::new(seed, true);
        sim.run();
        sim.check(seed);
    }
}
