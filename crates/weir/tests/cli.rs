//! Runs the `weir` binary: every subcommand against a real `weir server` child process, and bad
//! input (unknown topic, bad flag, broker down) with its exit code and one-line message.

#![allow(clippy::unwrap_used)] // test helpers: a failure here is a test failure

use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_weir");

struct Server {
    child: Child,
    bootstrap: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = Command::new(BIN)
        .args([
            "server",
            "--listeners",
            &format!("PLAINTEXT://127.0.0.1:{port}"),
            "--log-dirs",
        ])
        .arg(dir.path())
        .args([
            "--num-partitions",
            "3",
            "--group-initial-rebalance-delay-ms",
            "100",
        ])
        .env_remove("WEIR_BOOTSTRAP_SERVER")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the broker did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Server {
        child,
        bootstrap: format!("127.0.0.1:{port}"),
        _dir: dir,
    }
}

fn weir(server: &Server, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("WEIR_BOOTSTRAP_SERVER", &server.bootstrap);
    run(cmd, stdin)
}

fn run(mut cmd: Command, stdin: Option<&str>) -> Output {
    use std::io::Write;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn fails(out: &Output, code: i32, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert!(err.contains(needle), "'{needle}' not in: {err}");
    if code == 1 {
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "errors are one line: {err}"
        );
        assert!(
            !err.contains("panicked") && !err.contains("backtrace"),
            "{err}"
        );
    }
}

#[test]
fn topics_lifecycle_and_bad_input() {
    let s = server();
    ok(&weir(
        &s,
        &[
            "topics",
            "create",
            "--topic",
            "t1",
            "--partitions",
            "2",
            "--replication-factor",
            "1",
            "--config",
            "retention.ms=60000",
        ],
        None,
    ));
    fails(
        &weir(&s, &["topics", "create", "--topic", "t1"], None),
        1,
        "already exists",
    );
    ok(&weir(
        &s,
        &["topics", "create", "--topic", "t1", "--if-not-exists"],
        None,
    ));
    fails(
        &weir(&s, &["topics", "create", "--topic", "bad/name"], None),
        1,
        "bad/name",
    );
    fails(
        &weir(
            &s,
            &[
                "topics",
                "create",
                "--topic",
                "x",
                "--config",
                "retention.ms=soon",
            ],
            None,
        ),
        1,
        "retention.ms",
    );
    fails(
        &weir(
            &s,
            &[
                "topics",
                "create",
                "--topic",
                "x",
                "--replication-factor",
                "3",
            ],
            None,
        ),
        1,
        "replication factor",
    );
    assert!(ok(&weir(&s, &["topics", "list"], None))
        .lines()
        .any(|l| l == "t1"));
    let described = ok(&weir(&s, &["topics", "describe", "--topic", "t1"], None));
    assert!(
        described.contains("PartitionCount: 2") && described.contains("retention.ms=60000"),
        "{described}"
    );
    assert!(described.contains("LEADER") && described.contains("ISR"));
    ok(&weir(
        &s,
        &[
            "topics",
            "alter",
            "--topic",
            "t1",
            "--partitions",
            "4",
            "--config",
            "retention.ms=5000",
        ],
        None,
    ));
    let described = ok(&weir(&s, &["topics", "describe", "--topic", "t1"], None));
    assert!(
        described.contains("PartitionCount: 4") && described.contains("retention.ms=5000"),
        "{described}"
    );
    fails(
        &weir(
            &s,
            &["topics", "alter", "--topic", "t1", "--partitions", "2"],
            None,
        ),
        1,
        "partitions",
    );
    fails(
        &weir(&s, &["topics", "describe", "--topic", "nope"], None),
        1,
        "nope",
    );
    ok(&weir(&s, &["topics", "delete", "--topic", "t1"], None));
    fails(
        &weir(&s, &["topics", "delete", "--topic", "t1"], None),
        1,
        "t1",
    );
    ok(&weir(
        &s,
        &["topics", "delete", "--topic", "t1", "--if-exists"],
        None,
    ));
    fails(
        &weir(&s, &["topics", "create", "--no-such-flag"], None),
        2,
        "--no-such-flag",
    );
}

#[test]
fn produce_consume_round_trip() {
    let s = server();
    ok(&weir(
        &s,
        &["topics", "create", "--topic", "pc", "--partitions", "3"],
        None,
    ));
    let lines: String = (0..50).map(|i| format!("k{}:v{i}\n", i % 7)).collect();
    ok(&weir(
        &s,
        &[
            "produce",
            "--topic",
            "pc",
            "--key-separator",
            ":",
            "--header",
            "h=1",
            "--compression",
            "lz4",
        ],
        Some(&lines),
    ));
    let out = ok(&weir(
        &s,
        &[
            "consume",
            "--topic",
            "pc",
            "--from-beginning",
            "--max-messages",
            "50",
            "--property",
            "print.key=true",
            "--property",
            "key.separator=:",
        ],
        None,
    ));
    let mut got: Vec<String> = out.lines().map(String::from).collect();
    got.sort();
    let mut want: Vec<String> = lines.lines().map(String::from).collect();
    want.sort();
    assert_eq!(got, want);
    let json = ok(&weir(
        &s,
        &[
            "consume",
            "--topic",
            "pc",
            "--partition",
            "0",
            "--offset",
            "1",
            "--format",
            "json",
            "--timeout-ms",
            "1500",
        ],
        None,
    ));
    for line in json.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["partition"], 0);
        assert!(v["offset"].as_i64().unwrap() >= 1);
        assert_eq!(v["headers"]["h"], "1");
    }
    // By timestamp: everything was just produced, so an old timestamp reads it all.
    let all = ok(&weir(
        &s,
        &[
            "consume",
            "--topic",
            "pc",
            "--timestamp",
            "0",
            "--max-messages",
            "50",
        ],
        None,
    ));
    assert_eq!(all.lines().count(), 50);
    fails(
        &weir(
            &s,
            &["consume", "--topic", "missing", "--max-messages", "1"],
            None,
        ),
        1,
        "missing",
    );
    fails(
        &weir(
            &s,
            &["produce", "--topic", "pc", "--acks", "2"],
            Some("x\n"),
        ),
        1,
        "--acks",
    );
    fails(
        &weir(
            &s,
            &["produce", "--topic", "pc", "--key-separator", ":"],
            Some("no separator here\n"),
        ),
        1,
        "separator",
    );
    fails(
        &weir(&s, &["consume", "--topic", "pc", "--offset", "3"], None),
        1,
        "--partition",
    );
    for (prop, needle) in [
        (
            "partition.assignment.strategy=sticky",
            "unknown assignor 'sticky'",
        ),
        ("session.timeout.ms=soon", "milliseconds"),
        ("no.such.setting=1", "unknown --consumer-property"),
    ] {
        let args = [
            "consume",
            "--topic",
            "pc",
            "--group",
            "g",
            "--consumer-property",
            prop,
        ];
        fails(&weir(&s, &args, None), 1, needle);
    }
    // Producer settings: bad ones are one line naming the property, before any record is sent.
    for (props, needle) in [
        (
            &["no.such.setting=1"][..],
            "unknown producer property 'no.such.setting'",
        ),
        (
            &["linger.ms=soon"][..],
            "--producer-property linger.ms=soon",
        ),
        (&["acks=2"][..], "--producer-property acks=2"),
        // Idempotence asked for with acks=1: refused whichever order the two come in.
        (
            &["enable.idempotence=true", "acks=1"][..],
            "invalid producer settings",
        ),
        (
            &["acks=1", "enable.idempotence=true"][..],
            "invalid producer settings",
        ),
        (
            &["max.in.flight.requests.per.connection=10"][..],
            "invalid producer settings",
        ),
    ] {
        let mut args = vec!["produce", "--topic", "pc"];
        for p in props {
            args.extend(["--producer-property", p]);
        }
        fails(&weir(&s, &args, Some("x\n")), 1, needle);
    }
    ok(&weir(
        &s,
        &[
            "produce",
            "--topic",
            "pc",
            "--producer-property",
            "acks=1",
            "--producer-property",
            "max.in.flight.requests.per.connection=10",
        ],
        Some("settings\n"),
    ));
    // The Java class name is understood too.
    let out = ok(&weir(
        &s,
        &[
            "consume",
            "--topic",
            "pc",
            "--group",
            "coop",
            "--from-beginning",
            "--max-messages",
            "1",
            "--consumer-property",
            "partition.assignment.strategy=org.apache.kafka.clients.consumer.CooperativeStickyAssignor",
        ],
        None,
    ));
    assert_eq!(out.lines().count(), 1, "{out}");
}

#[test]
fn groups_describe_lag_reset_and_delete() {
    let s = server();
    ok(&weir(
        &s,
        &["topics", "create", "--topic", "gt", "--partitions", "2"],
        None,
    ));
    let lines: String = (0..20).map(|i| format!("{i}\n")).collect();
    ok(&weir(&s, &["produce", "--topic", "gt"], Some(&lines)));
    ok(&weir(
        &s,
        &[
            "consume",
            "--topic",
            "gt",
            "--group",
            "gg",
            "--from-beginning",
            "--max-messages",
            "20",
        ],
        None,
    ));
    assert!(ok(&weir(&s, &["groups", "list"], None)).contains("gg"));
    let described = ok(&weir(&s, &["groups", "describe", "--group", "gg"], None));
    assert!(described.contains("Total lag: 0"), "{described}");
    ok(&weir(&s, &["produce", "--topic", "gt"], Some("a\nb\nc\n")));
    let described = ok(&weir(&s, &["groups", "describe", "--group", "gg"], None));
    assert!(described.contains("Total lag: 3"), "{described}");
    let dry = ok(&weir(
        &s,
        &[
            "groups",
            "reset-offsets",
            "--group",
            "gg",
            "--topic",
            "gt",
            "--to-earliest",
        ],
        None,
    ));
    assert!(dry.contains("dry run"));
    ok(&weir(
        &s,
        &[
            "groups",
            "reset-offsets",
            "--group",
            "gg",
            "--topic",
            "gt",
            "--to-earliest",
            "--execute",
        ],
        None,
    ));
    let described = ok(&weir(&s, &["groups", "describe", "--group", "gg"], None));
    assert!(described.contains("Total lag: 23"), "{described}");
    ok(&weir(&s, &["groups", "delete", "--group", "gg"], None));
    fails(
        &weir(&s, &["groups", "describe", "--group", "gg"], None),
        1,
        "gg",
    );
    fails(
        &weir(&s, &["groups", "delete", "--group", "never"], None),
        1,
        "never",
    );
}

#[test]
fn perf_reports_json() {
    let s = server();
    ok(&weir(
        &s,
        &["topics", "create", "--topic", "pf", "--partitions", "2"],
        None,
    ));
    for kind in ["produce", "consume", "e2e"] {
        let out = ok(&weir(
            &s,
            &[
                "perf",
                kind,
                "--topic",
                "pf",
                "--num-records",
                "2000",
                "--record-size",
                "64",
                "--json",
            ],
            None,
        ));
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["test"], kind);
        assert_eq!(v["records"], 2000, "{v}");
        assert!(v["records_per_sec"].as_f64().unwrap() > 0.0);
        if kind != "consume" {
            assert!(v["latency_ms"]["p99"].as_f64().is_some(), "{v}");
        }
    }
    // Several producers and consumers share the records and partitions; the chart is an SVG
    // with the run's title and a line per series.
    let dir = tempfile::tempdir().unwrap();
    for kind in ["produce", "consume", "e2e"] {
        let chart = dir.path().join(format!("{kind}.svg"));
        let out = ok(&weir(
            &s,
            &[
                "perf",
                kind,
                "--topic",
                "pf",
                "--num-records",
                "3000",
                "--record-size",
                "64",
                "--producers",
                "3",
                "--consumers",
                "2",
                "--chart",
                chart.to_str().unwrap(),
                "--json",
            ],
            None,
        ));
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        // consume reads the whole topic: 2000 + 2000 (the runs above) + 3000.
        let want = if kind == "consume" { 7000 } else { 3000 };
        assert_eq!(v["records"], want, "{kind}: {v}");
        let svg = std::fs::read_to_string(&chart).unwrap();
        assert!(
            svg.starts_with("<svg"),
            "{kind}: {}",
            &svg[..svg.len().min(200)]
        );
        assert!(svg.contains(&format!("weir perf {kind} (pf)")), "{kind}");
        assert!(
            svg.matches("<polyline").count() > 10,
            "{kind}: no lines drawn"
        );
    }
    fails(
        &weir(
            &s,
            &["perf", "produce", "--topic", "pf", "--producers", "0"],
            None,
        ),
        2,
        "--producers",
    );
}

#[test]
fn broker_down_and_help() {
    let port = free_port();
    let mut cmd = Command::new(BIN);
    cmd.args([
        "topics",
        "list",
        "--bootstrap-server",
        &format!("127.0.0.1:{port}"),
        "--request-timeout-ms",
        "2000",
    ]);
    fails(&run(cmd, None), 1, "cannot reach");
    let help = run(
        {
            let mut c = Command::new(BIN);
            c.args(["server", "--help"]);
            c
        },
        None,
    );
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--node-id",
        "--listeners",
        "--log-dirs",
        "--num-partitions",
        "--log-retention-ms",
        "--config",
    ] {
        assert!(text.contains(flag), "{flag} missing from server --help");
    }
}

/// A one-node cluster: its node is the active controller, its only voter and its only broker,
/// and it leads every partition.
#[test]
fn cluster_status_and_leaders() {
    let server = server();
    ok(&weir(
        &server,
        &["topics", "create", "--topic", "spread", "--partitions", "3"],
        None,
    ));
    let status = ok(&weir(&server, &["cluster", "status"], None));
    assert!(status.contains("active controller: 0"), "{status}");
    assert!(status.contains("0\tactive\t"), "{status}");
    assert!(status.contains("0\tlive\t127.0.0.1:"), "{status}");
    let leaders = ok(&weir(&server, &["cluster", "leaders"], None));
    assert!(leaders.contains("0\t3\t3"), "{leaders}");
    assert!(leaders.contains("offline partitions: 0"), "{leaders}");

    // Every partition is led by its preferred (only) replica.
    let elect = |args: &[&str]| {
        let mut all = vec!["cluster", "elect"];
        all.extend_from_slice(args);
        weir(&server, &all, None)
    };
    let out = ok(&elect(&[
        "--election-type",
        "preferred",
        "--all-topic-partitions",
    ]));
    assert!(out.contains("no partition needed an election"), "{out}");
    let out = ok(&elect(&[
        "--election-type",
        "preferred",
        "--topic",
        "spread",
    ]));
    assert_eq!(out.matches("no election needed").count(), 3, "{out}");
    fails(
        &elect(&[
            "--election-type",
            "unclean",
            "--topic",
            "spread",
            "--partition",
            "7",
        ]),
        1,
        "1 of 1 elections did not happen",
    );
    fails(&elect(&["--election-type", "preferred"]), 1, "give --topic");
}
