//! Data-driven tests of the consumer-group protocol: each file in `consumer/testdata/` is a
//! script of commands (see [`crate::datadriven`]).
//!
//! Commands: `topics a=6 b=2` (the cluster's topics and partition counts), `time ms=N`,
//! `hb m=M e=EPOCH [sub=a,b] [regex=R] [owned=a:0,1;b:2 | owned=-] [instance=I]
//! [rebalance=MS] [assignor=A]` (a heartbeat; `owned` left out: unchanged; `-`: nothing),
//! `tick` (expiry), `state`; classic members in the group: `cjoin m=M sub=a [owned=..]`,
//! `csync m=M g=GEN`, `chb m=M g=GEN`, and `upgrade gen=N M1=a:0,1 M2=a:2` (a classic group's
//! members, each with its assignment, become this consumer group), `reload` (the group written
//! as `__consumer_offsets` holds it and read back, as a new coordinator would). After every
//! command the script checks that no partition is held by two members.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use kafka_protocol::error::ResponseError;

use super::*;

struct Script {
    group: ConsumerGroup,
    topics: Topics,
    now: i64,
    next_id: u64,
    config: ConsumerConfig,
}

fn fmt_assignment(a: &Assignment) -> String {
    let parts: Vec<String> = a
        .iter()
        .filter(|(_, p)| !p.is_empty())
        .map(|(t, ps)| {
            let list: Vec<String> = ps.iter().map(i32::to_string).collect();
            format!("{t}:{}", list.join(","))
        })
        .collect();
    if parts.is_empty() {
        "-".to_string()
    } else {
        parts.join(";")
    }
}

fn parse_assignment(s: &str) -> Assignment {
    let mut a = Assignment::new();
    if s == "-" {
        return a;
    }
    for topic in s.split(';') {
        let (t, ps) = topic.split_once(':').expect("topic:partitions");
        let set: BTreeSet<i32> = ps
            .split(',')
            .map(|p| p.parse().expect("partition"))
            .collect();
        a.insert(t.to_string(), set);
    }
    a
}

impl Script {
    fn new() -> Script {
        Script {
            group: ConsumerGroup::new(),
            topics: Topics::new(),
            now: 0,
            next_id: 0,
            config: ConsumerConfig {
                session_timeout_ms: 45_000,
                heartbeat_interval_ms: 5_000,
                max_size: 4,
                assignors: &ASSIGNORS,
            },
        }
    }

    /// No partition held by two members, and every held partition recorded as held.
    fn check_exclusive(&self) {
        let mut seen: HashMap<(String, i32), &str> = HashMap::new();
        for m in self.group.members.values() {
            for key in pairs(&m.assigned).chain(pairs(&m.revoking)) {
                if let Some(other) = seen.insert(key.clone(), &m.member_id) {
                    panic!("{key:?} held by {other} and {}", m.member_id);
                }
                assert_eq!(
                    self.group.holders.get(&key).map(String::as_str),
                    Some(m.member_id.as_str()),
                    "holder of {key:?}"
                );
            }
        }
    }

    fn run(&mut self, line: &str) -> Vec<String> {
        let mut parts = line.split_whitespace();
        let command = parts.next().unwrap_or_default();
        let args: BTreeMap<&str, &str> = parts.filter_map(|p| p.split_once('=')).collect();
        let out = match command {
            "topics" => {
                self.topics = args
                    .iter()
                    .map(|(t, n)| (t.to_string(), n.parse().expect("count")))
                    .collect();
                vec![]
            }
            "time" => {
                self.now = args
                    .get("ms")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(self.now);
                vec![]
            }
            "hb" => {
                let epoch: i32 = args.get("e").and_then(|v| v.parse().ok()).unwrap_or(0);
                let req = HeartbeatRequest {
                    group_id: "g".into(),
                    member_id: args.get("m").copied().unwrap_or_default().to_string(),
                    member_epoch: epoch,
                    instance_id: args.get("instance").map(|s| s.to_string()),
                    rebalance_timeout_ms: args
                        .get("rebalance")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(if epoch == 0 { 30_000 } else { -1 }),
                    subscribed: args
                        .get("sub")
                        .map(|s| s.split(',').map(str::to_string).collect()),
                    regex: args.get("regex").map(|s| s.to_string()),
                    server_assignor: args.get("assignor").map(|s| s.to_string()),
                    owned: args.get("owned").map(|s| parse_assignment(s)),
                    ..HeartbeatRequest::default()
                };
                let next_id = &mut self.next_id;
                let r = self.group.heartbeat(
                    req,
                    &self.topics,
                    &self.config,
                    || {
                        *next_id += 1;
                        format!("new-{next_id}")
                    },
                    self.now,
                );
                if r.error != 0 {
                    let name = ResponseError::try_from_code(r.error)
                        .map(|e| format!("{e:?}"))
                        .unwrap_or_default();
                    vec![format!("{name}: {}", r.message.unwrap_or_default())]
                } else {
                    let mut s = format!("{} epoch={}", r.member_id, r.member_epoch);
                    if let Some(a) = &r.assignment {
                        s.push_str(&format!(" assignment={}", fmt_assignment(a)));
                    }
                    vec![s]
                }
            }
            "cjoin" => {
                let join = ClassicJoin {
                    member_id: args.get("m").copied().unwrap_or_default().to_string(),
                    instance_id: None,
                    client_id: String::new(),
                    client_host: String::new(),
                    session_timeout_ms: 10_000,
                    rebalance_timeout_ms: 30_000,
                    protocols: vec![("cooperative-sticky".to_string(), bytes::Bytes::new())],
                    subscribed: args
                        .get("sub")
                        .map(|s| s.split(',').map(str::to_string).collect())
                        .unwrap_or_default(),
                    owned: args
                        .get("owned")
                        .map(|s| parse_assignment(s))
                        .unwrap_or_default(),
                    id_given: true,
                };
                match self
                    .group
                    .classic_join(join, &self.topics, &self.config, self.now)
                {
                    Ok((m, epoch)) => vec![format!("{m} generation={epoch}")],
                    Err(e) => vec![format!("{e:?}")],
                }
            }
            "csync" | "chb" => {
                let m = args.get("m").copied().unwrap_or_default();
                let g: i32 = args.get("g").and_then(|v| v.parse().ok()).unwrap_or(-1);
                let result = if command == "csync" {
                    self.group
                        .classic_sync(m, g, self.now)
                        .map(|a| format!("assignment={}", fmt_assignment(&a)))
                } else {
                    self.group
                        .classic_heartbeat(m, None, g, self.now)
                        .map(|()| "NONE".to_string())
                };
                vec![result.unwrap_or_else(|e| format!("{e:?}"))]
            }
            "upgrade" => {
                let generation: i32 = args.get("gen").and_then(|v| v.parse().ok()).unwrap_or(0);
                let members = args
                    .iter()
                    .filter(|(k, _)| **k != "gen")
                    .map(|(id, a)| {
                        let mut m = ConsumerMember::new(id, None, self.now);
                        m.assigned = parse_assignment(a);
                        m.subscribed = m.assigned.keys().cloned().collect();
                        m.classic = Some(ClassicMember {
                            protocols: Vec::new(),
                            session_timeout_ms: 10_000,
                        });
                        m
                    })
                    .collect();
                self.group = ConsumerGroup::from_classic(generation, members);
                vec![]
            }
            "reload" => {
                let before = self.group.fingerprint();
                let bytes = self.group.encode();
                self.group = ConsumerGroup::decode(&bytes, self.now).expect("decodes");
                assert_eq!(
                    self.group.fingerprint(),
                    before,
                    "the reloaded group differs"
                );
                vec![]
            }
            "tick" => {
                let gone = self.group.expire(&self.config, self.now);
                gone.into_iter().map(|m| format!("removed {m}")).collect()
            }
            "state" => {
                let g = &self.group;
                let mut out = vec![format!(
                    "group epoch={} assignment_epoch={} state={} assignor={}",
                    g.epoch,
                    g.assignment_epoch,
                    g.state_name(),
                    g.assignor
                )];
                for m in g.members.values() {
                    out.push(format!(
                        "{} epoch={} {:?} assigned={} revoking={} target={}",
                        m.member_id,
                        m.epoch,
                        m.state,
                        fmt_assignment(&m.assigned),
                        fmt_assignment(&m.revoking),
                        fmt_assignment(&g.target.get(&m.member_id).cloned().unwrap_or_default())
                    ));
                }
                out
            }
            other => panic!("unknown command {other}"),
        };
        self.check_exclusive();
        out
    }
}

#[test]
fn scripts() {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/group/coordinator/consumer/testdata");
    crate::datadriven::run_dir(&dir, 3, Script::new, |script, line| script.run(line));
}
