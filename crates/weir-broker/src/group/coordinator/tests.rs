//! Data-driven tests of the coordinator: each file in `group/testdata/` is a script of commands
//! (see [`crate::datadriven`]).
//!
//! Commands (`key=value` arguments; `time` sets the clock every later command runs at):
//! `time ms=N`, `join r=ID group=G [member=M] [client=C] [v=5] [protocols=a,b] [session=MS]
//! [rebalance=MS] [instance=I] [type=consumer]`, `sync r=ID group=G gen=N member=M [instance=I]
//! [assign=M1:A1,M2:A2]`, `heartbeat group=G gen=N member=M [instance=I]`, `leave group=G
//! members=M1,M2` (a member may be `M@INSTANCE`), `commit group=G gen=N member=M`, `offsets group=G partitions=t-0,t-1` (stores offsets), `tick`,
//! `state group=G`, `delete group=G`, `restart` (a new coordinator, loaded from the group records
//! the old one asked to persist, through their encoding, and from its offsets).

use std::collections::HashMap;
use std::path::PathBuf;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;

use super::super::records::OffsetValue;
use super::*;

fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE".to_string(),
        Some(e) => format!("{e:?}"),
    }
}

struct Script {
    coordinator: Coordinator,
    now: i64,
    /// Every group record the coordinator asked to persist, encoded, in order.
    persisted: Vec<(String, Option<Bytes>)>,
}

impl Script {
    fn new() -> Script {
        Script {
            coordinator: Coordinator::new(CoordinatorConfig {
                min_session_timeout_ms: 1_000,
                max_session_timeout_ms: 60_000,
                initial_rebalance_delay_ms: 3_000,
                offsets_retention_ms: 100_000,
                random_member_ids: false,
                consumer: super::consumer::ConsumerConfig {
                    session_timeout_ms: 45_000,
                    heartbeat_interval_ms: 5_000,
                    max_size: 100,
                    assignors: &super::consumer::ASSIGNORS,
                },
            }),
            now: 0,
            persisted: Vec::new(),
        }
    }

    /// Keeps the records `outputs` ask to persist, then formats them.
    fn record(&mut self, outputs: Vec<Output>) -> Vec<String> {
        for o in &outputs {
            if let Output::PersistGroup(g, v) = o {
                let value = v.as_ref().map(super::super::records::group_value);
                self.persisted.push((g.clone(), value));
            }
        }
        Self::fmt_outputs(outputs)
    }

    fn restart(&mut self) {
        let mut fresh = Script::new().coordinator;
        // Numbered ids go on from where they were, as random ones would not repeat.
        fresh.next_member = self.coordinator.next_member;
        for (g, v) in &self.persisted {
            let value = v
                .clone()
                .map(|b| super::super::records::decode_group_value(b).expect("decodes"));
            fresh.restore_group(g, value, self.now);
        }
        for (name, group) in &self.coordinator.groups {
            for ((t, p), v) in &group.offsets {
                fresh.restore_offset(name, t, *p, Some(v.clone()), self.now);
            }
        }
        self.coordinator = fresh;
    }

    fn fmt_outputs(outputs: Vec<Output>) -> Vec<String> {
        outputs
            .into_iter()
            .map(|o| match o {
                Output::Join(id, r) => {
                    let mut s = format!(
                        "join r={id}: {} member={} gen={} leader={} proto={}",
                        error_name(r.error),
                        r.member_id,
                        r.generation_id,
                        r.leader,
                        r.protocol_name.unwrap_or_default()
                    );
                    if !r.members.is_empty() {
                        let ids: Vec<String> = r.members.into_iter().map(|(m, _, _)| m).collect();
                        s.push_str(&format!(" members=[{}]", ids.join(",")));
                    }
                    s
                }
                Output::Sync(id, r) => format!(
                    "sync r={id}: {} assignment={}",
                    error_name(r.error),
                    String::from_utf8_lossy(&r.assignment)
                ),
                Output::PersistGroup(g, Some(v)) => {
                    format!(
                        "persist group={g} gen={} proto={}",
                        v.generation,
                        v.protocol.unwrap_or_default()
                    )
                }
                Output::PersistGroup(g, None) => format!("persist group={g} tombstone"),
                Output::PersistConsumer(g, v) => {
                    format!(
                        "persist consumer-group={g} {}",
                        if v.is_some() { "snapshot" } else { "tombstone" }
                    )
                }
                Output::DeleteOffsets(g, offsets) => {
                    let list: Vec<String> = offsets
                        .into_iter()
                        .map(|(t, p)| format!("{t}-{p}"))
                        .collect();
                    format!("delete-offsets group={g} [{}]", list.join(","))
                }
            })
            .collect()
    }

    fn run(&mut self, line: &str) -> Vec<String> {
        let mut parts = line.split_whitespace();
        let command = parts.next().unwrap_or_default();
        let args: HashMap<&str, &str> = parts.filter_map(|p| p.split_once('=')).collect();
        let get = |k: &str| args.get(k).copied().unwrap_or_default().to_string();
        let num = |k: &str, d: i64| args.get(k).and_then(|v| v.parse().ok()).unwrap_or(d);
        let opt = |k: &str| args.get(k).map(|v| v.to_string());
        let group = get("group");
        match command {
            "time" => {
                self.now = num("ms", self.now);
                vec![]
            }
            "join" => {
                let protocols = args
                    .get("protocols")
                    .copied()
                    .unwrap_or("range")
                    .split(',')
                    .map(|p| (p.to_string(), Bytes::from(format!("meta-{p}"))))
                    .collect();
                let req = JoinRequest {
                    group_id: group,
                    member_id: get("member"),
                    group_instance_id: opt("instance"),
                    client_id: args.get("client").copied().unwrap_or("c").to_string(),
                    client_host: "/127.0.0.1".into(),
                    session_timeout_ms: num("session", 10_000) as i32,
                    rebalance_timeout_ms: num("rebalance", 30_000) as i32,
                    protocol_type: args.get("type").copied().unwrap_or("consumer").to_string(),
                    protocols,
                    version: num("v", 5) as i16,
                };
                let out = self.coordinator.join(num("r", 0) as u64, req, self.now);
                self.record(out)
            }
            "sync" => {
                let assignments = args
                    .get("assign")
                    .map(|a| {
                        a.split(',')
                            .filter_map(|p| p.split_once(':'))
                            .map(|(m, v)| (m.to_string(), Bytes::from(v.to_string())))
                            .collect()
                    })
                    .unwrap_or_default();
                let req = SyncRequest {
                    group_id: group,
                    generation_id: num("gen", 0) as i32,
                    member_id: get("member"),
                    group_instance_id: opt("instance"),
                    protocol_type: None,
                    protocol_name: None,
                    assignments,
                };
                let out = self.coordinator.sync(num("r", 0) as u64, req, self.now);
                self.record(out)
            }
            "heartbeat" => {
                let code = self.coordinator.heartbeat(
                    &group,
                    num("gen", 0) as i32,
                    &get("member"),
                    opt("instance").as_deref(),
                    self.now,
                );
                vec![format!("heartbeat: {}", error_name(code))]
            }
            "leave" => {
                let members: Vec<(String, Option<String>)> = get("members")
                    .split(',')
                    .map(|m| match m.split_once('@') {
                        Some((id, inst)) => (id.to_string(), Some(inst.to_string())),
                        None => (m.to_string(), None),
                    })
                    .collect();
                let (top, codes, out) = self.coordinator.leave(&group, &members, self.now);
                let codes: Vec<String> = codes.into_iter().map(error_name).collect();
                let mut lines = vec![format!("leave: {} [{}]", error_name(top), codes.join(","))];
                lines.extend(self.record(out));
                lines
            }
            "commit" => {
                let r = self.coordinator.check_commit(
                    &group,
                    num("gen", -1) as i32,
                    &get("member"),
                    opt("instance").as_deref(),
                    self.now,
                );
                vec![format!(
                    "commit: {}",
                    r.map_or_else(|e| format!("{e:?}"), |_| "NONE".to_string())
                )]
            }
            "tick" => {
                let out = self.coordinator.tick(self.now, |_| true);
                self.record(out)
            }
            "restart" => {
                self.restart();
                vec![]
            }
            // A commit written at once (`offsets`), or in two steps: begun (its write queued)
            // and finished when the write ended (`written=false` for a failed one).
            "offsets" | "begin-commit" | "finish-commit" => {
                let offsets: Vec<((String, i32), OffsetValue)> = get("partitions")
                    .split(',')
                    .filter_map(|tp| tp.rsplit_once('-'))
                    .map(|(t, p)| {
                        let value = OffsetValue {
                            offset: num("offset", 5),
                            leader_epoch: -1,
                            metadata: String::new(),
                            commit_timestamp: self.now,
                        };
                        ((t.to_string(), p.parse().unwrap_or(0)), value)
                    })
                    .collect();
                let keys: Vec<(String, i32)> = offsets.iter().map(|(k, _)| k.clone()).collect();
                let written = opt("written").is_none_or(|w| w == "true");
                match command {
                    "begin-commit" => {
                        let token = self.coordinator.begin_commit(&group, &keys);
                        vec![format!("token: {token}")]
                    }
                    "finish-commit" => {
                        let token = num("token", 0) as u64;
                        self.coordinator
                            .finish_commit(&group, token, offsets, written);
                        vec![]
                    }
                    _ => {
                        let token = self.coordinator.begin_commit(&group, &keys);
                        self.coordinator.finish_commit(&group, token, offsets, true);
                        vec![]
                    }
                }
            }
            "delete-offsets" => {
                let mut topics: Vec<(String, Vec<i32>)> = Vec::new();
                for (t, p) in get("partitions")
                    .split(',')
                    .filter_map(|tp| tp.rsplit_once('-'))
                {
                    topics.push((t.to_string(), vec![p.parse().unwrap_or(0)]));
                }
                match self.coordinator.delete_offsets(&group, &topics) {
                    Ok((codes, removed)) => {
                        let codes: Vec<String> =
                            codes.into_iter().flatten().map(error_name).collect();
                        let removed: Vec<String> =
                            removed.iter().map(|(t, p)| format!("{t}-{p}")).collect();
                        vec![format!(
                            "delete-offsets: [{}] tombstones=[{}]",
                            codes.join(","),
                            removed.join(",")
                        )]
                    }
                    Err(e) => vec![format!("delete-offsets: {e:?}")],
                }
            }
            "committed" => match self.coordinator.groups.get(&group) {
                None => vec![format!("committed {group}: none")],
                Some(g) => {
                    let stored: Vec<String> = g
                        .offsets
                        .iter()
                        .map(|((t, p), v)| format!("{t}-{p}={}", v.offset))
                        .collect();
                    let pending: Vec<String> = g
                        .pending_offsets
                        .keys()
                        .map(|(t, p)| format!("{t}-{p}"))
                        .collect();
                    vec![format!(
                        "committed {group}: [{}] pending=[{}]",
                        stored.join(","),
                        pending.join(",")
                    )]
                }
            },
            "delete" => vec![match self.coordinator.delete_group(&group) {
                Ok(offsets) => {
                    self.persisted.push((group.clone(), None));
                    if offsets.is_empty() {
                        "delete: NONE".to_string()
                    } else {
                        let keys: Vec<String> =
                            offsets.iter().map(|(t, p)| format!("{t}-{p}")).collect();
                        format!("delete: NONE tombstones=[{}]", keys.join(","))
                    }
                }
                Err(e) => format!("delete: {e:?}"),
            }],
            "state" => match self.coordinator.groups.get(&group) {
                None => vec![format!("state {group}: none")],
                Some(g) => {
                    let members: Vec<&str> = g.join_order.iter().map(String::as_str).collect();
                    vec![format!(
                        "state {group}: {} gen={} leader={} members=[{}]",
                        g.state.name(),
                        g.generation_id,
                        g.leader_id.clone().unwrap_or_default(),
                        members.join(",")
                    )]
                }
            },
            other => panic!("unknown command '{other}'"),
        }
    }
}

#[test]
fn scripts() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/group/testdata");
    crate::datadriven::run_dir(&dir, 4, Script::new, |script, line| script.run(line));
}
