//! Transactions through weir-client and the `weir` tools against a real `weir server`: the
//! transactional producer (commits, aborts, a fenced instance), the read_committed consumer,
//! `weir perf produce` in transactions, and `weir transactions` (list, describe,
//! describe-producers, and abort of a hanging transaction).

#![allow(clippy::unwrap_used)] // test helpers: a failure here is a test failure

use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use weir_client::{
    Consumer, ConsumerConfig, Error, ProducerConfig, ProducerRecord, ResponseError,
    TransactionalProducer,
};

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

fn server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(BIN)
        .args([
            "server",
            "--listeners",
            &format!("PLAINTEXT://127.0.0.1:{port}"),
        ])
        .arg("--log-dirs")
        .arg(dir.path())
        .args(["--num-partitions", "3"])
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

fn weir(s: &Server, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("WEIR_BOOTSTRAP_SERVER", &s.bootstrap)
        .stdin(Stdio::null())
        .output()
        .unwrap()
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

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn txn_config(s: &Server, id: &str) -> ProducerConfig {
    let mut config = ProducerConfig::new(&s.bootstrap);
    config.transactional_id = Some(id.to_string());
    config
}

/// Every value readable in partition `partition` of `topic`, read until quiet for a second.
async fn read(s: &Server, topic: &str, partition: i32, committed: bool) -> Vec<String> {
    let mut config = ConsumerConfig::new(&s.bootstrap);
    config.read_committed = committed;
    config.auto_offset_reset = weir_client::AutoOffsetReset::Earliest;
    config.enable_auto_commit = false;
    let mut c = Consumer::new(config).await.unwrap();
    c.assign(vec![(topic.to_string(), partition)])
        .await
        .unwrap();
    let mut out = Vec::new();
    let mut quiet = Instant::now();
    while quiet.elapsed() < Duration::from_secs(1) {
        let batch = c
            .poll_batch(1000, Duration::from_millis(200))
            .await
            .unwrap();
        if !batch.is_empty() {
            quiet = Instant::now();
        }
        out.extend(
            batch
                .into_iter()
                .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap()),
        );
    }
    out
}

async fn send_all(p: &TransactionalProducer, topic: &str, values: &[String]) {
    let mut acks = Vec::new();
    for v in values {
        let record = ProducerRecord::new(topic, v.clone()).with_partition(0);
        acks.push(p.send(record).await.unwrap());
    }
    for a in acks {
        a.await.unwrap();
    }
}

fn values(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

#[test]
fn the_transactional_producer_commits_aborts_and_is_fenced() {
    let s = server();
    ok(&weir(
        &s,
        &["topics", "create", "--topic", "tx", "--partitions", "1"],
    ));
    runtime().block_on(async {
        let zombie = TransactionalProducer::new(txn_config(&s, "app"))
            .await
            .unwrap();
        zombie.begin_transaction().unwrap();
        send_all(&zombie, "tx", &values("zombie", 10)).await;
        // A new instance with the same id fences the first and aborts what it left open.
        let p = TransactionalProducer::new(txn_config(&s, "app"))
            .await
            .unwrap();
        assert!(p.producer_id_and_epoch().1 > zombie.producer_id_and_epoch().1);
        let fenced = zombie.commit_transaction().await.unwrap_err();
        assert!(
            matches!(
                fenced,
                Error::Kafka {
                    error: ResponseError::ProducerFenced | ResponseError::InvalidProducerEpoch,
                    ..
                }
            ),
            "{fenced}"
        );
        // Fatal, as in Kafka's clients: the instance is unusable from now on.
        assert!(zombie.begin_transaction().is_err());
        p.begin_transaction().unwrap();
        send_all(&p, "tx", &values("committed", 5)).await;
        p.commit_transaction().await.unwrap();
        p.begin_transaction().unwrap();
        send_all(&p, "tx", &values("aborted", 7)).await;
        p.abort_transaction().await.unwrap();
        assert_eq!(read(&s, "tx", 0, true).await, values("committed", 5));
        assert_eq!(read(&s, "tx", 0, false).await.len(), 22);
    });
}

#[test]
fn perf_in_transactions_and_the_transactions_tool() {
    let s = server();
    ok(&weir(
        &s,
        &["topics", "create", "--topic", "pt", "--partitions", "3"],
    ));
    let out = ok(&weir(
        &s,
        &[
            "perf",
            "produce",
            "--topic",
            "pt",
            "--num-records",
            "3000",
            "--record-size",
            "50",
            "--transactional-id",
            "perf-tx",
            "--records-per-transaction",
            "1000",
            "--json",
        ],
    ));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["records"], 3000, "{v}");
    let consumed = ok(&weir(
        &s,
        &[
            "consume",
            "--topic",
            "pt",
            "--from-beginning",
            "--isolation-level",
            "read_committed",
            "--max-messages",
            "3000",
            "--timeout-ms",
            "10000",
        ],
    ));
    assert_eq!(consumed.lines().count(), 3000);
    let listed = ok(&weir(&s, &["transactions", "list"]));
    assert!(
        listed.contains("perf-tx") && listed.contains("CompleteCommit"),
        "{listed}"
    );
    let described = ok(&weir(
        &s,
        &["transactions", "describe", "--transactional-id", "perf-tx"],
    ));
    assert!(described.contains("CompleteCommit"), "{described}");
    let bad = weir(
        &s,
        &["consume", "--topic", "pt", "--isolation-level", "maybe"],
    );
    assert_eq!(bad.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&bad.stderr).trim().lines().count(),
        1
    );
    let unknown = weir(
        &s,
        &["transactions", "describe", "--transactional-id", "nobody"],
    );
    assert_eq!(unknown.status.code(), Some(1));

    // A hanging transaction: open in a partition, its producer gone. The tool finds it and
    // aborts it there, and read_committed consumers move past it.
    ok(&weir(
        &s,
        &["topics", "create", "--topic", "hang", "--partitions", "1"],
    ));
    runtime().block_on(async {
        let p = TransactionalProducer::new(txn_config(&s, "hanging"))
            .await
            .unwrap();
        p.begin_transaction().unwrap();
        send_all(&p, "hang", &values("open", 3)).await;
        let producers = ok(&weir(
            &s,
            &[
                "transactions",
                "describe-producers",
                "--topic",
                "hang",
                "--partition",
                "0",
            ],
        ));
        let line = producers.lines().nth(1).unwrap();
        assert_eq!(line.split('\t').nth(5), Some("0"), "{producers}");
        ok(&weir(
            &s,
            &[
                "transactions",
                "abort",
                "--topic",
                "hang",
                "--partition",
                "0",
                "--start-offset",
                "0",
            ],
        ));
        let after = ok(&weir(
            &s,
            &[
                "transactions",
                "describe-producers",
                "--topic",
                "hang",
                "--partition",
                "0",
            ],
        ));
        assert!(after.lines().nth(1).unwrap().ends_with("None"), "{after}");
        assert!(read(&s, "hang", 0, true).await.is_empty());
    });
}
