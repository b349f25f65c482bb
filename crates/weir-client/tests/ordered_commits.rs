//! Concurrent processing with ordered commits, under a crash: a child process consumes in a
//! group, processes records in parallel in random order, and commits only behind fully processed
//! records ([`weir_client::OffsetTracker`]); the parent kills it with SIGKILL mid-run, then a new
//! member of the same group reads the rest. Checked: nothing is lost, every offset below the
//! committed one was fully processed, and redelivered records are only those at or after it.

#![allow(clippy::unwrap_used)] // test helpers: a failure here is a test failure

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weir_broker::BrokerConfig;
use weir_client::*;

const TOPIC: &str = "work";
const GROUP: &str = "workers";
const RECORDS: usize = 3000;

fn consumer_config(bootstrap: &str) -> ConsumerConfig {
    let mut c = ConsumerConfig::new(bootstrap).with_group(GROUP);
    c.auto_offset_reset = AutoOffsetReset::Earliest;
    c.enable_auto_commit = false;
    c.session_timeout = Duration::from_secs(2);
    c.heartbeat_interval = Duration::from_millis(300);
    c
}

/// The child: runs only when the parent starts it with WEIR_CHILD_BOOTSTRAP set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of a_killed_concurrent_consumer_loses_nothing"]
async fn child_processor() {
    let Ok(bootstrap) = std::env::var("WEIR_CHILD_BOOTSTRAP") else {
        return;
    };
    let mut consumer = Consumer::new(consumer_config(&bootstrap)).await.unwrap();
    consumer.subscribe(vec![TOPIC.into()]).await.unwrap();
    let tracker = OffsetTracker::new();
    // At most 8 records in processing at once, so the run lasts long enough to commit often.
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(8));
    let out = std::sync::Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let mut last_commit = Instant::now();
    loop {
        let batch = consumer
            .poll_batch(50, Duration::from_millis(100))
            .await
            .unwrap();
        tracker.track(&batch);
        for r in batch {
            let tracker = tracker.clone();
            let out = out.clone();
            let permit = permits.clone().acquire_owned().await.unwrap();
            tokio::spawn(async move {
                let _permit = permit;
                tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % 30)).await;
                // Report first, then mark done: a record is never committed before it is reported.
                {
                    let mut o = out.lock().unwrap();
                    writeln!(o, "done {} {}", r.partition, r.offset).unwrap();
                    o.flush().unwrap();
                }
                tracker.done(&r.topic, r.partition, r.offset);
            });
        }
        if last_commit.elapsed() > Duration::from_millis(100) {
            let offsets = tracker.committable();
            if consumer.commit_offsets(&offsets).await.is_ok() {
                let mut o = out.lock().unwrap();
                for ((_, p), off) in &offsets {
                    writeln!(o, "committed {p} {off}").unwrap();
                }
                o.flush().unwrap();
            }
            last_commit = Instant::now();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_concurrent_consumer_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = weir_broker::run(BrokerConfig {
        listeners: vec![weir_broker::security::ListenerConfig::plaintext(
            SocketAddr::from(([127, 0, 0, 1], 0)),
        )],
        log_dir: dir.path().to_path_buf(),
        group_initial_rebalance_delay_ms: 50,
        group_min_session_timeout_ms: 1000,
        ..BrokerConfig::default()
    })
    .await
    .unwrap();
    let bootstrap = server.local_addr.to_string();
    let admin = Admin::connect(&bootstrap).await.unwrap();
    admin
        .create_topics(
            &[NewTopic {
                name: TOPIC.into(),
                partitions: 2,
                replication_factor: 1,
                configs: vec![],
            }],
            false,
        )
        .await
        .unwrap()
        .pop()
        .unwrap()
        .unwrap();
    let producer = Producer::new(ProducerConfig::new(&bootstrap))
        .await
        .unwrap();
    let mut acks = Vec::new();
    for i in 0..RECORDS {
        acks.push(
            producer
                .send(ProducerRecord::new(TOPIC, format!("job-{i}")).with_partition((i % 2) as i32))
                .await
                .unwrap(),
        );
    }
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    for a in acks {
        let m = a.await.unwrap();
        let e = ends.entry(m.partition).or_default();
        *e = (*e).max(m.offset + 1);
    }
    producer.close().await;

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_processor",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("WEIR_CHILD_BOOTSTRAP", &bootstrap)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let kill_after = 300 + rand::random::<usize>() % 1200;
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut done: BTreeSet<(i32, i64)> = BTreeSet::new();
        let mut signalled = false;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // The test harness may print its own words before the first line.
            let Some(at) = line.find("done ") else {
                continue;
            };
            let parts: Vec<&str> = line[at..].split_whitespace().collect();
            if parts.len() == 3 {
                done.insert((parts[1].parse().unwrap(), parts[2].parse().unwrap()));
                if done.len() >= kill_after && !signalled {
                    signalled = true;
                    let _ = tx.send(());
                }
            }
        }
        done
    });
    let got_enough =
        tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(60)).is_ok())
            .await
            .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let done_by_child = reader.join().unwrap();
    eprintln!("child killed after {} records", done_by_child.len());
    assert!(
        got_enough,
        "the child processed only {} records",
        done_by_child.len()
    );

    let committed = admin.group_offsets(GROUP).await.unwrap();
    eprintln!("committed {committed:?}");
    for (&p, &end) in &ends {
        let c = committed.get(&(TOPIC.to_string(), p)).copied().unwrap_or(0);
        assert!(c <= end);
        for o in 0..c {
            assert!(
                done_by_child.contains(&(p, o)),
                "offset {o} of partition {p} was committed ({c}) but never processed"
            );
        }
    }

    // The dead member's session must expire before the group hands its partitions on.
    let mut consumer = Consumer::new(consumer_config(&bootstrap)).await.unwrap();
    consumer.subscribe(vec![TOPIC.into()]).await.unwrap();
    let mut second: BTreeSet<(i32, i64)> = BTreeSet::new();
    let expected: usize = ends
        .iter()
        .map(|(p, e)| {
            (e - committed
                .get(&(TOPIC.to_string(), *p))
                .copied()
                .unwrap_or(0)) as usize
        })
        .sum();
    let deadline = Instant::now() + Duration::from_secs(60);
    while second.len() < expected && Instant::now() < deadline {
        for r in consumer
            .poll_batch(500, Duration::from_millis(200))
            .await
            .unwrap()
        {
            second.insert((r.partition, r.offset));
        }
    }
    consumer.close().await.unwrap();
    for (&p, &end) in &ends {
        let c = committed.get(&(TOPIC.to_string(), p)).copied().unwrap_or(0);
        for o in 0..end {
            let seen = done_by_child.contains(&(p, o)) || second.contains(&(p, o));
            assert!(seen, "offset {o} of partition {p} was lost");
            if second.contains(&(p, o)) {
                assert!(
                    o >= c,
                    "offset {o} of partition {p} was redelivered although committed ({c})"
                );
            }
        }
    }
    let redelivered = second.intersection(&done_by_child).count();
    let in_flight_bound = done_by_child.len()
        - committed
            .values()
            .map(|&c| c as usize)
            .sum::<usize>()
            .min(done_by_child.len());
    assert!(
        redelivered <= in_flight_bound,
        "{redelivered} duplicates, more than the {in_flight_bound} uncommitted"
    );
    server.shutdown().await;
}
