//! Data-driven tests of [`ReplicaState`], the sans-IO core of a partition's replication: each
//! file in `replication/testdata/` is a script of commands (see [`crate::datadriven`]).
//!
//! Commands (`time` sets the clock every later command runs at; `me` is broker 1, the lag
//! bound 10 s unless `lag=MS` says otherwise):
//! - `time ms=N`
//! - `image leader=L [new-epoch=1] replicas=1,2,3 isr=1,2 [durable=N] leo=N`: the metadata image;
//!   `durable` (what counts of the log, default `leo`)
//! - `fetch from=F offset=N leo=N [durable=N]`: a follower's fetch at its log end `offset`
//! - `append leo=N [durable=N]`: the leader's log grew (a one-replica ISR moves the watermark)
//! - `check leo=N [epoch-start=N] [lag=MS]`: the ISR check
//! - `done gen=N`, `refused gen=N why=stale|definite|none`: the controller's answer
//! - `state`

use std::time::{Duration, Instant};

use super::*;
use crate::datadriven::Args;

const ME: BrokerId = BrokerId(1);

struct Script {
    state: ReplicaState,
    start: Instant,
    now: Instant,
}

fn list(v: &[BrokerId]) -> String {
    let items: Vec<String> = v.iter().map(BrokerId::to_string).collect();
    format!("[{}]", items.join(","))
}

/// Broker ids from a script's list of numbers.
fn ids(v: &[i32]) -> Vec<BrokerId> {
    v.iter().copied().map(BrokerId).collect()
}

impl Script {
    fn new() -> Script {
        let start = Instant::now();
        Script {
            state: ReplicaState::new(vec![ME], vec![ME], Offset::ZERO),
            start,
            now: start,
        }
    }

    fn hw_line(&self, before: Offset) -> Vec<String> {
        if self.state.high_watermark == before {
            vec![]
        } else {
            vec![format!("hw {before} -> {}", self.state.high_watermark)]
        }
    }

    fn run(&mut self, line: &str) -> Vec<String> {
        let args = Args::parse(line);
        let leo = Offset(args.num("leo", 0));
        let durable = Offset(args.num("durable", leo.get()));
        let before = self.state.high_watermark;
        match args.command {
            "time" => {
                self.now = self.start + Duration::from_millis(args.num("ms", 0) as u64);
                vec![]
            }
            "image" => {
                let out = self.state.on_image(
                    ME,
                    BrokerId::from_wire(args.num("leader", i64::from(ME.get())) as i32),
                    args.num("new-epoch", 0) == 1,
                    &ids(&args.list("replicas")),
                    &ids(&args.list("isr")),
                    durable,
                    leo,
                    self.now,
                );
                let mut lines = self.hw_line(before);
                if out.began_leading {
                    lines.push("leading".into());
                }
                if out.changed {
                    lines.push("changed".into());
                }
                lines
            }
            "fetch" => {
                let follower = BrokerId(args.num("from", 0) as i32);
                let offset = Offset(args.num("offset", 0));
                self.state
                    .on_follower_fetch(ME, follower, offset, leo, durable, self.now);
                self.hw_line(before)
            }
            "append" => {
                self.state.advance_high_watermark(ME, durable);
                self.hw_line(before)
            }
            "check" => {
                let lag = Duration::from_millis(args.num("lag", 10_000) as u64);
                let epoch_start = Offset(args.num("epoch-start", 0));
                match self.state.isr_check(ME, leo, epoch_start, lag, self.now) {
                    None => vec![],
                    Some(ask) => vec![format!(
                        "{} gen={} isr={} from={}",
                        if ask.resend { "resend" } else { "ask" },
                        ask.generation,
                        list(&ask.isr),
                        list(&ask.based_on)
                    )],
                }
            }
            "done" => {
                self.state.isr_request_done(args.num("gen", 0) as u64);
                vec![]
            }
            "refused" => {
                let why = match args.get("why") {
                    Some("stale") => IsrRefusal::Stale,
                    Some("definite") => IsrRefusal::Definite,
                    _ => IsrRefusal::NoAnswer,
                };
                let changed = self
                    .state
                    .isr_refused(args.num("gen", 0) as u64, why, self.now);
                if changed {
                    vec!["changed".into()]
                } else {
                    vec![]
                }
            }
            "state" => {
                let s = &self.state;
                let mut followers: Vec<(BrokerId, Option<Offset>)> =
                    s.followers.iter().map(|(b, f)| (*b, f.leo)).collect();
                followers.sort_unstable();
                // A follower that has not fetched in this epoch shows -1.
                let followers: Vec<String> = followers
                    .iter()
                    .map(|(b, l)| format!("{b}:{}", Offset::to_wire(*l)))
                    .collect();
                let pending = s.pending_isr.as_ref().map_or("none".to_string(), |p| {
                    format!("{}@gen{}", list(&p.isr), p.generation)
                });
                vec![format!(
                    "hw={} replicas={} isr={} pending={} followers=[{}]",
                    s.high_watermark,
                    list(&s.replicas),
                    list(&s.isr),
                    pending,
                    followers.join(",")
                )]
            }
            other => panic!("unknown command '{other}'"),
        }
    }
}

#[test]
fn scripts() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/replication/testdata");
    crate::datadriven::run_dir(&dir, 3, Script::new, |script, line| script.run(line));
}

/// A change in flight from ISR [1, 2] to [1, 2, 3].
fn adding_broker_3(sent: Instant) -> PendingIsr {
    PendingIsr {
        isr: vec![BrokerId(1), BrokerId(2), BrokerId(3)],
        based_on: vec![BrokerId(1), BrokerId(2)],
        generation: 1,
        sent,
        in_flight: true,
        stale: false,
    }
}

#[test]
fn the_high_watermark_waits_for_the_slowest_isr_member_and_never_falls() {
    let now = Instant::now();
    let (b1, b2, b3) = (BrokerId(1), BrokerId(2), BrokerId(3));
    let mut s = ReplicaState::new(vec![b1, b2, b3], vec![b1, b2, b3], Offset(0));
    s.become_leader(b1, now);
    // Followers that have not fetched hold it.
    assert!(!s.advance_high_watermark(b1, Offset(10)));
    s.record_fetch(b2, Offset(10), Offset(10), now);
    assert!(!s.advance_high_watermark(b1, Offset(10)));
    s.record_fetch(b3, Offset(4), Offset(10), now);
    assert!(s.advance_high_watermark(b1, Offset(10)));
    assert_eq!(s.high_watermark, Offset(4));
    // Broker 3 leaves the ISR: the watermark follows broker 2.
    s.isr = vec![b1, b2];
    assert!(s.advance_high_watermark(b1, Offset(10)));
    assert_eq!(s.high_watermark, Offset(10));
    // Broker 3 being added counts again, but the watermark does not fall.
    s.pending_isr = Some(adding_broker_3(now));
    assert!(!s.advance_high_watermark(b1, Offset(12)));
    assert_eq!(s.high_watermark, Offset(10));
}

#[test]
fn laggards_leave_and_caught_up_replicas_join() {
    let t0 = Instant::now();
    let lag = Duration::from_secs(10);
    let (b1, b2, b3) = (BrokerId(1), BrokerId(2), BrokerId(3));
    let mut s = ReplicaState::new(vec![b1, b2, b3], vec![b1, b2, b3], Offset(0));
    s.become_leader(b1, t0);
    assert_eq!(s.wanted_isr(b1, Offset(0), Offset(0), lag, t0 + lag), None);
    s.record_fetch(b2, Offset(0), Offset(0), t0);
    s.record_fetch(b3, Offset(0), Offset(0), t0);
    assert_eq!(s.wanted_isr(b1, Offset(0), Offset(0), lag, t0), None);
    // Broker 2 keeps fetching what was there at its previous fetch; broker 3 stops.
    for i in 1..=20 {
        let t = t0 + Duration::from_secs(i);
        s.record_fetch(b2, Offset((i as i64 - 1) * 10), Offset(i as i64 * 10), t);
    }
    let later = t0 + Duration::from_secs(20);
    assert_eq!(
        s.wanted_isr(b1, Offset(200), Offset(0), lag, later),
        Some(vec![b1, b2])
    );
    s.isr = vec![b1, b2];
    s.advance_high_watermark(b1, Offset(200));
    // Broker 3 comes back behind the watermark: not yet; at it: it joins.
    s.record_fetch(b3, Offset(50), Offset(200), later);
    assert_eq!(s.wanted_isr(b1, Offset(200), Offset(0), lag, later), None);
    s.record_fetch(b3, Offset(200), Offset(200), later);
    assert_eq!(
        s.wanted_isr(b1, Offset(200), Offset(0), lag, later),
        Some(vec![b1, b2, b3])
    );
    // One change at a time.
    s.pending_isr = Some(adding_broker_3(later));
    assert_eq!(s.wanted_isr(b1, Offset(200), Offset(0), lag, later), None);
    assert!(!s.pending_isr.as_ref().unwrap().settled_by(&[b2, b1]));
    assert!(s.pending_isr.as_ref().unwrap().settled_by(&[b1, b2, b3]));
}
