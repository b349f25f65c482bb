//! A seeded simulation of transactions: the real coordinator state machine
//! ([`TxnCoordinator`]), its `__transaction_state` records (through their encoding), and real
//! partition logs (weir-log on a [`SimDisk`]) receiving transactional batches and markers, with
//! crashes.
//!
//! Producers (three transactional ids) run transactions over four partitions: they add
//! partitions, append transactional batches, and commit or abort. A seeded nemesis:
//! - kills a producer instance mid-transaction; a new instance with the same id starts (its
//!   InitProducerId fences the old one, which may go on as a zombie for a while);
//! - crashes the coordinator: states not yet written and markers not yet sent are lost, and a
//!   new coordinator (the next coordinator epoch) restores every id from the written records and
//!   sends the markers of prepared transactions again;
//! - cuts the power of the partitions' disk (what was not fsynced is torn off; appends and
//!   markers are fsynced before they count as written) and reopens every log;
//! - lets time pass, so a transaction past its timeout is aborted by the coordinator;
//! - delays a producer's batch: the producer times out, aborts and bumps its epoch, and the
//!   batch reaches its partition later (after the abort marker, say). Partitions check a
//!   producer's first transactional batch with the coordinator as leaders do (KIP-890 part 1,
//!   [`crate::partition::txn_gate`]), unless the run turns the check off;
//! - reads a partition under read_committed at random moments, as a consumer does (the LSO and
//!   the aborted-transaction list, filtered as Kafka's clients filter).
//!
//! The truth is the coordinator's written decisions: a transaction is committed when its
//! PrepareCommit is written, aborted when its PrepareAbort is. The checkers prove, for the reads
//! during the run and the final read of every partition:
//! - no aborted read: no record of an aborted (or never decided) transaction is seen;
//! - no intermediate read: a read that shows a transaction's record in a partition shows every
//!   record of that transaction before it in the partition. (A read may end inside a committed
//!   transaction, as in Kafka: the LSO is the first offset of the oldest open transaction, and
//!   another transaction's records may straddle it; the rest follows once that one ends.)
//! - a record once seen stays at its place: each read of a partition extends the one before;
//! - no lost committed write: every record of a committed transaction is in the final read;
//! - no duplicate: no record is seen twice;
//! - no hanging transaction: once everything settled, no partition has a transaction open.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failure is a test failure

mod checks;
mod late;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use weir_log::simfs::PowerLoss;
use weir_log::{ControlType, Log, LogConfig, LogError, SimDisk, Storage};
use weir_types::{LeaderEpoch, ProducerEpoch, ProducerId};

use super::coordinator::{Markers, Transition, TxnConfig, TxnCoordinator};
use super::records::{self, TxnState};
use crate::partition::txn_gate::TxnGate;

const PARTITIONS: i32 = 4;
const TOPIC: &str = "t";
const IDS: [&str; 3] = ["a", "b", "c"];
const TIMEOUT_MS: i32 = 5_000;

/// Where a producer instance is.
#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// Needs (or awaits) a producer id.
    Init,
    Idle,
    /// Adding partitions for its next records (awaiting the coordinator's write).
    Adding(Vec<i32>),
    /// Appending the records of the transaction.
    Producing(Vec<i32>),
    /// EndTxn sent; awaiting the answer.
    Ending(bool),
    /// Fenced or failed for good: a zombie that stops.
    Dead,
}

#[derive(Debug)]
struct Producer {
    id: &'static str,
    instance: u32,
    pid: ProducerId,
    epoch: ProducerEpoch,
    phase: Phase,
    /// Sequence per partition for this pid and epoch.
    sequences: HashMap<i32, i32>,
    /// The transaction attempt under way (its records carry it).
    attempt: Option<u64>,
    /// A request to the coordinator awaits its write (its answer comes with it).
    waiting: bool,
    /// Partitions its transaction holds.
    added: BTreeSet<i32>,
    /// An instance a newer one replaced: refused, it stops instead of restarting.
    zombie: bool,
    /// A batch timed out: once its transaction is aborted, it bumps its epoch (InitProducerId).
    reinit: bool,
}

/// A reply a write carries to a producer once written.
#[derive(Debug, Clone)]
enum Reply {
    Init(Who, ProducerId, ProducerEpoch),
    Added(Who, Vec<i32>),
    Ended(Who),
    /// Fencing abort for InitProducerId: answered CONCURRENT_TRANSACTIONS (retry).
    Retry(Who),
    None,
}

/// A producer instance: its slot and instance number (a reply to a replaced instance is lost).
type Who = (usize, u32);

impl Reply {
    fn who(&self) -> Option<Who> {
        match self {
            Reply::Init(w, ..) | Reply::Added(w, _) | Reply::Ended(w) | Reply::Retry(w) => Some(*w),
            Reply::None => None,
        }
    }
}

struct Sim {
    rng: StdRng,
    now: i64,
    coordinator: TxnCoordinator,
    coordinator_epoch: i32,
    /// Written `__transaction_state` records, latest per id, encoded.
    txn_log: BTreeMap<String, Bytes>,
    /// Writes planned and not yet done, with the reply they carry.
    pending_writes: VecDeque<(Transition, Reply)>,
    /// Markers to send, with the partitions not yet marked.
    pending_markers: Vec<(Markers, BTreeSet<i32>)>,
    /// Markers a crashed coordinator had in flight: they may still arrive, late.
    stale_markers: Vec<(Markers, i32)>,
    disk: SimDisk,
    storage: Arc<dyn Storage>,
    logs: Vec<Log>,
    producers: Vec<Producer>,
    next_pid: i64,
    next_attempt: u64,
    /// The attempt each id has open at the coordinator (set when its first partition is added).
    open_attempt: HashMap<String, u64>,
    /// Decisions: attempt → committed?
    decided: HashMap<u64, bool>,
    /// Records appended (and acknowledged): attempt → (partition, value).
    appended: HashMap<u64, Vec<(i32, String)>>,
    /// Reads during the run: partition → values seen, in order.
    reads: Vec<(i32, Vec<String>)>,
    /// What happened, for a failure's report.
    events: Vec<String>,
    /// Each partition's leader-side check of first transactional batches.
    gates: Vec<TxnGate>,
    /// Whether the partitions check (KIP-890 part 1).
    verify: bool,
    /// Batches delayed on their way to their partition.
    late: Vec<late::Late>,
}

fn log_dir(p: i32) -> PathBuf {
    PathBuf::from(format!("/data/{TOPIC}-{p}"))
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 2_000,
        index_interval_bytes: 200,
        ..LogConfig::default()
    }
}

fn txn_batch(pid: ProducerId, epoch: ProducerEpoch, seq: i32, values: &[String]) -> Vec<u8> {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: true,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: pid.0,
            producer_epoch: epoch.0,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: seq + i as i32,
            timestamp: 0,
            key: None,
            value: Some(Bytes::from(v.clone())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.to_vec()
}

impl Sim {
    fn new(seed: u64, verify: bool) -> Sim {
        let disk = SimDisk::new(seed);
        let storage = disk.storage();
        let logs = (0..PARTITIONS)
            .map(|p| Log::open_on(storage.clone(), &log_dir(p), config()).unwrap())
            .collect();
        Sim {
            rng: StdRng::seed_from_u64(seed),
            now: 0,
            coordinator: TxnCoordinator::new(TxnConfig {
                max_timeout_ms: 60_000,
            }),
            coordinator_epoch: 0,
            txn_log: BTreeMap::new(),
            pending_writes: VecDeque::new(),
            pending_markers: Vec::new(),
            stale_markers: Vec::new(),
            disk,
            storage,
            logs,
            producers: IDS
                .iter()
                .enumerate()
                .map(|(i, id)| Producer::new(id, i as u32))
                .collect(),
            next_pid: 1000,
            next_attempt: 0,
            open_attempt: HashMap::new(),
            decided: HashMap::new(),
            appended: HashMap::new(),
            reads: Vec::new(),
            events: Vec::new(),
            gates: (0..PARTITIONS).map(|_| TxnGate::default()).collect(),
            verify,
            late: Vec::new(),
        }
    }

    /// One producer takes its next step.
    fn step_producer(&mut self, i: usize) {
        let p = &self.producers[i];
        if p.waiting || p.phase == Phase::Dead {
            return;
        }
        let id = p.id;
        match p.phase.clone() {
            Phase::Init => {
                let fresh = self.coordinator.needs_producer_id(id).then(|| {
                    self.next_pid += 1;
                    ProducerId(self.next_pid)
                });
                let plan = self.coordinator.init_producer_id(
                    id,
                    TIMEOUT_MS,
                    None,
                    fresh,
                    self.coordinator_epoch,
                    self.now,
                );
                let who = (i, self.producers[i].instance);
                match (plan.write, plan.reply) {
                    (Some(t), Ok((pid, epoch))) => self.write(t, Reply::Init(who, pid, epoch)),
                    (Some(t), Err(_)) => self.write(t, Reply::Retry(who)),
                    (None, _) => {}
                }
            }
            Phase::Idle => {
                let n = self.rng.gen_range(1..=3);
                let parts: Vec<i32> = (0..n).map(|_| self.rng.gen_range(0..PARTITIONS)).collect();
                self.add(i, parts);
            }
            Phase::Adding(_) => {}
            Phase::Producing(parts) => {
                if parts.is_empty() || self.rng.gen_bool(0.25) {
                    let commit = self.rng.gen_bool(0.7) && !p.reinit;
                    self.end(i, commit);
                    return;
                }
                let part = parts[self.rng.gen_range(0..parts.len())];
                if !p.added.contains(&part) {
                    self.add(i, vec![part]);
                    return;
                }
                self.append(i, part);
            }
            Phase::Ending(_) | Phase::Dead => {}
        }
    }

    /// EndTxn.
    fn end(&mut self, i: usize, commit: bool) {
        let p = &self.producers[i];
        let (id, pid, epoch, who) = (p.id, p.pid, p.epoch, (i, p.instance));
        let plan = self.coordinator.end_txn(id, pid, epoch, commit, self.now);
        match (plan.write, plan.reply) {
            (Some(t), Ok(())) => {
                self.producers[i].phase = Phase::Ending(commit);
                self.write(t, Reply::Ended(who));
            }
            (None, Ok(())) => self.producers[i].phase = Phase::Idle,
            (_, Err(ResponseError::ConcurrentTransactions)) => {}
            (_, Err(_)) => self.fail(i),
        }
    }

    fn add(&mut self, i: usize, parts: Vec<i32>) {
        let p = &self.producers[i];
        let tps: Vec<_> = parts.iter().map(|n| (TOPIC.to_string(), *n)).collect();
        let plan = self
            .coordinator
            .add_partitions(p.id, p.pid, p.epoch, &tps, self.now);
        let who = (i, p.instance);
        match (plan.write, plan.reply) {
            (Some(t), Ok(())) => {
                self.producers[i].phase = Phase::Adding(parts.clone());
                self.write(t, Reply::Added(who, parts));
            }
            (None, Ok(())) => self.added(i, parts),
            (_, Err(ResponseError::ConcurrentTransactions)) => {}
            (_, Err(_)) => self.fail(i),
        }
    }

    fn added(&mut self, i: usize, parts: Vec<i32>) {
        let p = &mut self.producers[i];
        if p.attempt.is_none() {
            self.next_attempt += 1;
            p.attempt = Some(self.next_attempt);
        }
        let attempt = p.attempt.expect("set above");
        p.added.extend(parts.iter().copied());
        let mut all: Vec<i32> = match &p.phase {
            Phase::Producing(existing) => existing.clone(),
            _ => Vec::new(),
        };
        all.extend(parts);
        p.phase = Phase::Producing(all);
        self.open_attempt.insert(p.id.to_string(), attempt);
    }

    /// Appends a transactional batch of 1-3 records (fsynced before it counts).
    fn append(&mut self, i: usize, part: i32) {
        let n = self.rng.gen_range(1..=3);
        let p = &mut self.producers[i];
        let attempt = p.attempt.expect("producing inside an attempt");
        let seq = *p.sequences.get(&part).unwrap_or(&0);
        let values: Vec<String> = (0..n)
            .map(|k| format!("{}{}:{attempt}:{part}:{}", p.id, p.instance, seq + k))
            .collect();
        let batch = txn_batch(p.pid, p.epoch, seq, &values);
        let (id, pid, epoch) = (p.id, p.pid, p.epoch);
        if self.rng.gen_bool(0.05) {
            // Delayed: the producer times out, aborts, and bumps its epoch before going on.
            self.events.push(format!(
                "delay {values:?} pid={} epoch={} to {part}",
                pid.0, epoch.0
            ));
            self.late.push(late::Late::new(id, pid, epoch, part, batch));
            self.producers[i].reinit = true;
            self.end(i, false);
            return;
        }
        let result = self.leader_append(id, pid, epoch, part, batch);
        let p = &mut self.producers[i];
        match result {
            Ok(info) => {
                self.events.push(format!(
                    "append {values:?} pid={} epoch={} to {part} at {}",
                    p.pid.0, p.epoch.0, info.base_offset.0
                ));
                p.sequences.insert(part, seq + n);
                let entry = self.appended.entry(attempt).or_default();
                entry.extend(values.into_iter().map(|v| (part, v)));
            }
            Err(LogError::InvalidTxnState { .. }) => {
                // Only a transaction the coordinator no longer holds open refuses an on-time
                // batch (it was aborted at its timeout, or the producer was fenced).
                let tp = (TOPIC.to_string(), part);
                let confirmed = self.coordinator.verify_partitions(id, pid, epoch, &[tp]);
                assert!(
                    confirmed.iter().any(|r| r.is_err()),
                    "an on-time batch of {id} pid={} epoch={} refused at {part} though its coordinator holds the partition",
                    pid.0, epoch.0
                );
                self.fail(i);
            }
            Err(LogError::ProducerFenced { .. }) | Err(LogError::OutOfOrderSequence { .. }) => {
                self.fail(i);
            }
            Err(e) => panic!("append failed: {e}"),
        }
    }

    fn write(&mut self, t: Transition, reply: Reply) {
        if let Some((i, _)) = reply.who() {
            self.producers[i].waiting = true;
        }
        self.pending_writes.push_back((t, reply));
    }

    /// A producer refused for good: a zombie stops; the live instance is replaced by a new one
    /// (the application restarts it).
    fn fail(&mut self, i: usize) {
        if self.producers[i].zombie {
            self.producers[i].phase = Phase::Dead;
        } else {
            self.kill_producer(i, false);
        }
    }

    /// The producer a reply is for, if that instance is still there.
    fn reached(&mut self, who: Who) -> Option<&mut Producer> {
        self.producers
            .get_mut(who.0)
            .filter(|p| p.instance == who.1)
    }

    /// The oldest pending write is done: it applies, and its reply reaches its producer.
    fn complete_write(&mut self) {
        let Some((t, reply)) = self.pending_writes.pop_front() else {
            return;
        };
        let id = t.transactional_id.clone();
        self.events.push(format!(
            "written {id}: {:?} pid={} epoch={} parts={:?}",
            t.to.state, t.to.producer_id.0, t.to.producer_epoch.0, t.to.partitions
        ));
        self.txn_log.insert(id.clone(), records::value(&t.to));
        // The truth: a written PrepareCommit or PrepareAbort decides the id's open attempt.
        if matches!(t.to.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
            if let Some(attempt) = self.open_attempt.remove(&id) {
                let committed = t.to.state == TxnState::PrepareCommit;
                let previous = self.decided.insert(attempt, committed);
                assert!(
                    previous.is_none_or(|p| p == committed),
                    "attempt {attempt} decided twice, differently"
                );
            }
        }
        let follow = self.coordinator.written(&t, true);
        if let Some(m) = follow.markers {
            self.queue_markers(m);
        }
        if let Some(next) = follow.write {
            self.write(next, Reply::None);
        }
        let Some(who) = reply.who() else {
            return;
        };
        let Some(p) = self.reached(who) else {
            return;
        };
        p.waiting = false;
        match reply {
            Reply::Init(_, pid, epoch) => {
                p.pid = pid;
                p.epoch = epoch;
                p.sequences.clear();
                p.phase = Phase::Idle;
            }
            Reply::Added(_, parts) => self.added(who.0, parts),
            Reply::Ended(..) => {
                p.attempt = None;
                p.added.clear();
                p.phase = if std::mem::take(&mut p.reinit) {
                    Phase::Init
                } else {
                    Phase::Idle
                };
            }
            Reply::Retry(_) | Reply::None => {}
        }
    }

    fn queue_markers(&mut self, m: Markers) {
        let parts = m.partitions.iter().map(|(_, p)| *p).collect();
        self.pending_markers.push((m, parts));
    }

    /// A deposed coordinator's marker arrives late at its partition: refused when the
    /// partition has seen a newer coordinator's marker for the producer.
    fn write_stale_marker(&mut self) {
        if self.stale_markers.is_empty() {
            return;
        }
        let k = self.rng.gen_range(0..self.stale_markers.len());
        let (m, part) = self.stale_markers.swap_remove(k);
        self.mark(&m, part, "late marker");
    }

    /// Appends one marker to a partition and fsyncs it; a marker the partition refuses as
    /// fenced counts as written, as the broker's marker sender counts it.
    fn mark(&mut self, m: &Markers, part: i32, what: &str) {
        let kind = if m.commit {
            ControlType::Commit
        } else {
            ControlType::Abort
        };
        let log = &mut self.logs[part as usize];
        let result = log
            .append_marker(
                m.producer_id,
                m.producer_epoch,
                m.coordinator_epoch,
                kind,
                LeaderEpoch(0),
                self.now,
            )
            .and_then(|info| log.flush().map(|()| info));
        self.events.push(format!(
            "{what} {kind:?} pid={} epoch={} coordinator={} to {part}: {:?}",
            m.producer_id.0,
            m.producer_epoch.0,
            m.coordinator_epoch,
            result.as_ref().map(|i| i.base_offset.0)
        ));
        match result {
            Ok(_) => self.gates[part as usize].marked(m.producer_id),
            Err(LogError::ProducerFenced { .. }) | Err(LogError::CoordinatorFenced { .. }) => {}
            Err(e) => panic!("marker failed: {e}"),
        }
    }

    /// Writes one marker of a prepared transaction (fsynced); the last one completes it.
    fn write_marker(&mut self) {
        if self.pending_markers.is_empty() {
            return;
        }
        let k = self.rng.gen_range(0..self.pending_markers.len());
        let (m, remaining) = &self.pending_markers[k];
        let Some(&part) = remaining.iter().next() else {
            return;
        };
        let m = m.clone();
        self.mark(&m, part, "marker");
        let remaining = &mut self.pending_markers[k].1;
        remaining.remove(&part);
        if remaining.is_empty() {
            let (m, _) = self.pending_markers.swap_remove(k);
            let done = self.coordinator.markers_written(
                &m.transactional_id,
                m.producer_id,
                m.producer_epoch,
                self.now,
            );
            if let Some(t) = done {
                self.write(t, Reply::None);
            }
        }
    }

    /// The coordinator crashes: unwritten states and unsent markers are lost; the next one
    /// restores every id from the records and resumes prepared transactions.
    fn crash_coordinator(&mut self) {
        self.events.push("coordinator crash".into());
        let lost: Vec<Reply> = self.pending_writes.drain(..).map(|(_, r)| r).collect();
        for reply in lost {
            if let Some(p) = reply.who().and_then(|w| self.reached(w)) {
                // The client's request failed: it retries from where it was.
                p.waiting = false;
                p.phase = match &p.phase {
                    Phase::Adding(_) => {
                        if p.added.is_empty() {
                            Phase::Idle
                        } else {
                            Phase::Producing(p.added.iter().copied().collect())
                        }
                    }
                    Phase::Ending(_) => Phase::Producing(p.added.iter().copied().collect()),
                    other => other.clone(),
                };
            }
        }
        for (m, parts) in self.pending_markers.drain(..) {
            for p in parts {
                self.stale_markers.push((m.clone(), p));
            }
        }
        self.coordinator_epoch += 1;
        self.coordinator = TxnCoordinator::new(TxnConfig {
            max_timeout_ms: 60_000,
        });
        for (id, value) in &self.txn_log {
            let meta = records::decode_value(value.clone()).expect("written records decode");
            self.coordinator
                .restore(id, Some(meta), self.coordinator_epoch);
        }
        for m in self.coordinator.resume(|_| true) {
            self.queue_markers(m);
        }
    }

    /// The partitions' disk loses power: what was not fsynced is torn off; the logs reopen.
    fn power_cut(&mut self) {
        self.events.push("power cut".into());
        self.logs.clear();
        self.disk.power_loss(PowerLoss::TornTail);
        self.logs = (0..PARTITIONS)
            .map(|p| Log::open_on(self.storage.clone(), &log_dir(p), config()).unwrap())
            .collect();
        for (gate, log) in self.gates.iter_mut().zip(&self.logs) {
            gate.reset(log.open_transactions().into_iter().map(|(p, _)| p));
        }
    }

    /// A producer instance dies; a new one with the same id starts. With `zombie`, the old one
    /// goes on as a zombie that can only be fenced (it stays in the list, Dead once refused).
    fn kill_producer(&mut self, i: usize, zombie: bool) {
        self.events
            .push(format!("kill {} zombie={zombie}", self.producers[i].id));
        let old = &mut self.producers[i];
        if old.zombie {
            old.phase = Phase::Dead;
            return;
        }
        let next = Producer::new(old.id, old.instance + 10);
        if zombie && old.phase != Phase::Dead && !old.waiting {
            let mut zombie = std::mem::replace(old, next);
            zombie.zombie = true;
            self.producers.push(zombie);
        } else {
            *old = next;
        }
    }

    fn read(&mut self) {
        let part = self.rng.gen_range(0..PARTITIONS);
        let values = checks::read_committed(&self.logs[part as usize]);
        self.events
            .push(format!("read {} of {part}", self.reads.len()));
        self.reads.push((part, values));
    }

    fn tick(&mut self) {
        for t in self.coordinator.tick(self.now) {
            self.write(t, Reply::None);
        }
    }

    fn run(&mut self, steps: usize) {
        for _ in 0..steps {
            self.now += self.rng.gen_range(1..40);
            let roll = self.rng.gen_range(0..100);
            match roll {
                0..=41 => {
                    let i = self.rng.gen_range(0..self.producers.len());
                    self.step_producer(i);
                }
                42..=62 => self.complete_write(),
                63..=80 => self.write_marker(),
                81..=88 => self.read(),
                89..=92 => self.tick(),
                93..=94 => {
                    // A live instance (the first slots hold one per id).
                    let i = self.rng.gen_range(0..IDS.len());
                    let zombie = self.rng.gen_bool(0.5);
                    self.kill_producer(i, zombie);
                }
                95 => self.crash_coordinator(),
                96 => self.power_cut(),
                97 if self.rng.gen_bool(0.2) => self.now += i64::from(TIMEOUT_MS),
                97 => self.write_stale_marker(),
                98 => self.deliver_late(),
                _ => self.complete_write(),
            }
        }
        // Quiesce: no new transactions; everything open ends (by timeout if need be).
        for p in &mut self.producers {
            if p.phase == Phase::Idle || p.phase == Phase::Init {
                p.phase = Phase::Dead;
            }
        }
        while !self.late.is_empty() {
            self.deliver_late();
        }
        for _ in 0..10_000 {
            if self.pending_writes.is_empty()
                && self.pending_markers.is_empty()
                && self.coordinator.txns.values().all(|t| {
                    !matches!(
                        t.meta.state,
                        TxnState::Ongoing | TxnState::PrepareCommit | TxnState::PrepareAbort
                    )
                })
            {
                break;
            }
            self.now += 100;
            self.tick();
            self.complete_write();
            self.write_marker();
        }
        assert!(
            self.pending_writes.is_empty() && self.pending_markers.is_empty(),
            "did not quiesce"
        );
    }
}

impl Producer {
    fn new(id: &'static str, instance: u32) -> Producer {
        Producer {
            id,
            instance,
            pid: ProducerId(-1),
            epoch: ProducerEpoch(-1),
            phase: Phase::Init,
            sequences: HashMap::new(),
            attempt: None,
            waiting: false,
            added: BTreeSet::new(),
            zombie: false,
            reinit: false,
        }
    }
}

fn seeds() -> Vec<u64> {
    std::env::var("WEIR_TXN_SIM_SEEDS")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| (1..=12).collect())
}

#[test]
fn transactions_stay_atomic_through_crashes() {
    for seed in seeds() {
        let mut sim = Sim::new(seed, true);
        sim.run(5_000);
        let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let committed = sim.check();
            sim.check_nothing_hangs();
            committed
        }));
        let committed = match checked {
            Ok(c) => c,
            Err(e) => {
                let tail = 0;
                for e in &sim.events[tail..] {
                    eprintln!("{e}");
                }
                std::panic::resume_unwind(e)
            }
        };
        let aborted = sim.decided.values().filter(|c| !**c).count();
        let commits = sim.decided.values().filter(|c| **c).count();
        println!("seed {seed}: {commits} commits, {aborted} aborts, {committed} committed records, {} reads", sim.reads.len());
        assert!(
            commits > 5 && aborted > 2 && committed > 0,
            "seed {seed}: too little happened ({commits} commits, {aborted} aborts, {committed} records)"
        );
    }
}
