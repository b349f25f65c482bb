//! Data-driven tests of the transaction coordinator: each file in `txn/testdata/` is a script
//! of commands (see [`crate::datadriven`]).
//!
//! Commands (`key=value` arguments; `time` sets the clock every later command runs at):
//! `time ms=N`, `init id=T [timeout=MS] [expect=PID/EPOCH] [fresh=PID]`,
//! `add id=T pid=P epoch=E parts=t-0,t-1`, `verify id=T pid=P epoch=E parts=t-0`,
//! `end id=T pid=P epoch=E commit=true|false`, `written id=T [ok=false]` (the pending state's
//! write ended), `markers-done id=T pid=P epoch=E`, `tick`, `state id=T`, and `restart` (a new
//! coordinator restored from the records written so far, through their encoding).

use std::collections::BTreeMap;
use std::path::PathBuf;

use bytes::Bytes;

use super::*;
use crate::txn::records;

struct Script {
    coordinator: TxnCoordinator,
    now: i64,
    /// The latest written record of every id, encoded.
    written: BTreeMap<String, Bytes>,
}

fn new_coordinator() -> TxnCoordinator {
    TxnCoordinator::new(TxnConfig {
        max_timeout_ms: 900_000,
    })
}

fn args(line: &str) -> (String, BTreeMap<String, String>) {
    let mut words = line.split_whitespace();
    let command = words.next().unwrap_or_default().to_string();
    let args = words
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    (command, args)
}

fn parts(list: &str) -> Vec<TopicPartition> {
    list.split(',')
        .filter(|s| !s.is_empty())
        .map(|p| {
            let (t, n) = p.rsplit_once('-').expect("topic-partition");
            (t.to_string(), n.parse().expect("partition"))
        })
        .collect()
}

fn fmt_meta(m: &TxnMeta) -> String {
    let parts: Vec<String> = m
        .partitions
        .iter()
        .map(|(t, p)| format!("{t}-{p}"))
        .collect();
    format!(
        "{} pid={} epoch={} timeout={} parts=[{}] start={}",
        m.state.name(),
        m.producer_id.0,
        m.producer_epoch.0,
        m.timeout_ms,
        parts.join(","),
        m.start_ms
    )
}

fn fmt_reply<R: std::fmt::Debug>(r: &Result<R, ResponseError>) -> String {
    match r {
        Ok(v) => format!("reply: ok {v:?}"),
        Err(e) => format!("reply: {e:?}"),
    }
}

fn fmt_transition(t: &Transition) -> String {
    format!("write {}: {}", t.transactional_id, fmt_meta(&t.to))
}

fn fmt_plan<R: std::fmt::Debug>(p: &Plan<R>) -> Vec<String> {
    let mut out: Vec<String> = p.write.iter().map(fmt_transition).collect();
    out.push(fmt_reply(&p.reply));
    out
}

fn fmt_markers(m: &Markers) -> String {
    let parts: Vec<String> = m
        .partitions
        .iter()
        .map(|(t, p)| format!("{t}-{p}"))
        .collect();
    format!(
        "markers {}: {} pid={} epoch={} coordinator_epoch={} parts=[{}]",
        m.transactional_id,
        if m.commit { "commit" } else { "abort" },
        m.producer_id.0,
        m.producer_epoch.0,
        m.coordinator_epoch,
        parts.join(",")
    )
}

fn pid_epoch(a: &BTreeMap<String, String>) -> (ProducerId, ProducerEpoch) {
    (
        ProducerId(a["pid"].parse().expect("pid")),
        ProducerEpoch(a["epoch"].parse().expect("epoch")),
    )
}

impl Script {
    fn run(&mut self, line: &str) -> Vec<String> {
        let (command, a) = args(line);
        let id = a.get("id").cloned().unwrap_or_default();
        match command.as_str() {
            "time" => {
                self.now = a["ms"].parse().expect("ms");
                vec![]
            }
            "init" => {
                let timeout = a
                    .get("timeout")
                    .map_or(60_000, |t| t.parse().expect("timeout"));
                let expected = a.get("expect").map(|e| {
                    let (p, ep) = e.split_once('/').expect("PID/EPOCH");
                    (
                        ProducerId(p.parse().expect("pid")),
                        ProducerEpoch(ep.parse().expect("epoch")),
                    )
                });
                let fresh = a
                    .get("fresh")
                    .map(|p| ProducerId(p.parse().expect("fresh")));
                let needs = self.coordinator.needs_producer_id(&id);
                let plan = self
                    .coordinator
                    .init_producer_id(&id, timeout, expected, fresh, 3, self.now);
                let mut out = vec![format!("needs_producer_id: {needs}")];
                out.extend(fmt_plan(&plan));
                out
            }
            "add" => {
                let (pid, epoch) = pid_epoch(&a);
                let plan =
                    self.coordinator
                        .add_partitions(&id, pid, epoch, &parts(&a["parts"]), self.now);
                fmt_plan(&plan)
            }
            "verify" => {
                let (pid, epoch) = pid_epoch(&a);
                self.coordinator
                    .verify_partitions(&id, pid, epoch, &parts(&a["parts"]))
                    .iter()
                    .map(fmt_reply)
                    .collect()
            }
            "end" => {
                let (pid, epoch) = pid_epoch(&a);
                let commit = a["commit"] == "true";
                let plan = self.coordinator.end_txn(&id, pid, epoch, commit, self.now);
                fmt_plan(&plan)
            }
            "written" => {
                let ok = a.get("ok").is_none_or(|v| v == "true");
                let pending = self
                    .coordinator
                    .txns
                    .get(&id)
                    .and_then(|t| t.pending.clone());
                let Some(to) = pending else {
                    return vec!["nothing pending".into()];
                };
                if ok {
                    self.written.insert(id.clone(), records::value(&to));
                }
                let t = Transition {
                    transactional_id: id.clone(),
                    to,
                };
                let follow = self.coordinator.written(&t, ok);
                let mut out: Vec<String> = follow.markers.iter().map(fmt_markers).collect();
                out.extend(follow.write.iter().map(fmt_transition));
                out
            }
            "markers-done" => {
                let (pid, epoch) = pid_epoch(&a);
                self.coordinator
                    .markers_written(&id, pid, epoch, self.now)
                    .iter()
                    .map(fmt_transition)
                    .collect()
            }
            "tick" => self
                .coordinator
                .tick(self.now)
                .iter()
                .map(fmt_transition)
                .collect(),
            "state" => match self.coordinator.txns.get(&id) {
                None => vec![format!("state {id}: unknown")],
                Some(t) => {
                    let mut out = vec![format!("state {id}: {}", fmt_meta(&t.meta))];
                    if let Some(p) = &t.pending {
                        out.push(format!("pending: {}", fmt_meta(p)));
                    }
                    out
                }
            },
            "restart" => {
                self.coordinator = new_coordinator();
                for (id, value) in &self.written {
                    let meta = records::decode_value(value.clone());
                    self.coordinator.restore(id, meta, 4);
                }
                self.coordinator
                    .resume(|_| true)
                    .iter()
                    .map(fmt_markers)
                    .collect()
            }
            other => panic!("unknown command {other}"),
        }
    }
}

#[test]
fn scripts() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/txn/testdata");
    crate::datadriven::run_dir(
        &dir,
        3,
        || Script {
            coordinator: new_coordinator(),
            now: 0,
            written: BTreeMap::new(),
        },
        |s, line| s.run(line),
    );
}
