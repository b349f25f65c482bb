//! weir-client against a real (in-process) Weir broker: producing, consuming, groups, admin, and
//! ordered commits that survive a consumer being killed mid-run.

#![allow(clippy::unwrap_used)] // test helpers: a failure here is a test failure

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use weir_broker::{BrokerConfig, ServerHandle};
use weir_client::partitioner::murmur2_partition;
use weir_client::*;

async fn broker(dir: &std::path::Path) -> ServerHandle {
    let config = BrokerConfig {
        listeners: vec![weir_broker::security::ListenerConfig::plaintext(
            SocketAddr::from(([127, 0, 0, 1], 0)),
        )],
        log_dir: dir.to_path_buf(),
        num_partitions: 3,
        group_initial_rebalance_delay_ms: 100,
        group_min_session_timeout_ms: 1000,
        ..BrokerConfig::default()
    };
    weir_broker::run(config).await.unwrap()
}

async fn create(admin: &Admin, topic: &str, partitions: i32) {
    let r = admin
        .create_topics(
            &[NewTopic {
                name: topic.into(),
                partitions,
                replication_factor: 1,
                configs: vec![],
            }],
            false,
        )
        .await
        .unwrap();
    r.into_iter().for_each(|r| r.unwrap());
}

async fn produce_keyed(
    bootstrap: &str,
    topic: &str,
    n: usize,
    compression: Compression,
) -> Vec<RecordMetadata> {
    let mut config = ProducerConfig::new(bootstrap);
    config.compression = compression;
    let producer = Producer::new(config).await.unwrap();
    let mut futures = Vec::new();
    for i in 0..n {
        let record =
            ProducerRecord::new(topic, format!("value-{i}")).with_key(format!("key-{}", i % 37));
        futures.push(producer.send(record).await.unwrap());
    }
    let mut out = Vec::new();
    for f in futures {
        out.push(f.await.unwrap());
    }
    producer.close().await;
    out
}

async fn read_all(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    expect: usize,
) -> Vec<ConsumerRecord> {
    let mut config = ConsumerConfig::new(bootstrap);
    config.auto_offset_reset = AutoOffsetReset::Earliest;
    let mut consumer = Consumer::new(config).await.unwrap();
    consumer
        .assign((0..partitions).map(|p| (topic.to_string(), p)).collect())
        .await
        .unwrap();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while out.len() < expect && std::time::Instant::now() < deadline {
        out.extend(
            consumer
                .poll_batch(500, Duration::from_millis(200))
                .await
                .unwrap(),
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_and_consume_with_every_codec() {
    let dir = tempfile::tempdir().unwrap();
    let server = broker(dir.path()).await;
    let bootstrap = server.local_addr.to_string();
    let admin = Admin::connect(&bootstrap).await.unwrap();
    for (i, codec) in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ]
    .into_iter()
    .enumerate()
    {
        let topic = format!("codec-{i}");
        create(&admin, &topic, 3).await;
        let acks = produce_keyed(&bootstrap, &topic, 300, codec).await;
        // Keys land where the Java client puts them, and offsets are dense per partition.
        for (i, m) in acks.iter().enumerate() {
            assert_eq!(
                m.partition,
                murmur2_partition(format!("key-{}", i % 37).as_bytes(), 3)
            );
        }
        let got = read_all(&bootstrap, &topic, 3, 300).await;
        assert_eq!(got.len(), 300, "{codec:?}");
        let mut by_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
        for r in &got {
            by_partition.entry(r.partition).or_default().push(r.offset);
            let v = String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap();
            let i: usize = v.trim_start_matches("value-").parse().unwrap();
            assert_eq!(r.key.as_deref(), Some(format!("key-{}", i % 37).as_bytes()));
        }
        for offsets in by_partition.values() {
            assert_eq!(*offsets, (0..offsets.len() as i64).collect::<Vec<_>>());
        }
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_batch_returns_when_full_or_when_time_is_up() {
    let dir = tempfile::tempdir().unwrap();
    let server = broker(dir.path()).await;
    let bootstrap = server.local_addr.to_string();
    let admin = Admin::connect(&bootstrap).await.unwrap();
    create(&admin, "pb", 1).await;
    let mut config = ConsumerConfig::new(&bootstrap);
    config.auto_offset_reset = AutoOffsetReset::Earliest;
    let mut consumer = Consumer::new(config).await.unwrap();
    consumer.assign(vec![("pb".into(), 0)]).await.unwrap();
    let empty = consumer
        .poll_batch(10, Duration::from_millis(300))
        .await
        .unwrap();
    assert!(empty.is_empty());
    produce_keyed(&bootstrap, "pb", 25, Compression::None).await;
    let first = consumer
        .poll_batch(10, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(first.len(), 10);
    let second = consumer
        .poll_batch(100, Duration::from_millis(500))
        .await
        .unwrap();
    assert_eq!(second.len(), 15, "the rest arrives when the wait is over");
    assert_eq!(second[0].offset, 10);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_share_partitions_and_resume_from_commits() {
    let dir = tempfile::tempdir().unwrap();
    let server = broker(dir.path()).await;
    let bootstrap = server.local_addr.to_string();
    let admin = Admin::connect(&bootstrap).await.unwrap();
    create(&admin, "g", 4).await;
    produce_keyed(&bootstrap, "g", 400, Compression::None).await;

    let make = |assignor: &str| {
        let mut c = ConsumerConfig::new(&bootstrap).with_group("readers");
        c.auto_offset_reset = AutoOffsetReset::Earliest;
        c.enable_auto_commit = false;
        c.session_timeout = Duration::from_secs(6);
        c.heartbeat_interval = Duration::from_millis(300);
        c.assignors = vec![assignor.to_string()];
        c
    };
    let mut a = Consumer::new(make("roundrobin")).await.unwrap();
    let mut b = Consumer::new(make("roundrobin")).await.unwrap();
    a.subscribe(vec!["g".into()]).await.unwrap();
    b.subscribe(vec!["g".into()]).await.unwrap();
    let mut seen: BTreeSet<(i32, i64)> = BTreeSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        let (ra, rb) = tokio::join!(
            a.poll_batch(100, Duration::from_millis(300)),
            b.poll_batch(100, Duration::from_millis(300))
        );
        for r in ra.unwrap().into_iter().chain(rb.unwrap()) {
            seen.insert((r.partition, r.offset));
        }
        let both = !a.assignment().is_empty() && !b.assignment().is_empty();
        if both && seen.len() == 400 {
            break;
        }
    }
    assert_eq!(seen.len(), 400, "every record consumed");
    let mut owned: Vec<(String, i32)> = a
        .assignment()
        .iter()
        .chain(b.assignment())
        .cloned()
        .collect();
    owned.sort();
    assert_eq!(
        owned,
        (0..4).map(|p| ("g".to_string(), p)).collect::<Vec<_>>(),
        "disjoint and complete"
    );
    a.commit().await.unwrap();
    b.commit().await.unwrap();
    a.close().await.unwrap();
    b.close().await.unwrap();

    let lag = admin.group_lag("readers").await.unwrap();
    assert_eq!(lag.len(), 4);
    assert!(lag.iter().all(|l| l.lag == 0), "{lag:?}");

    produce_keyed(&bootstrap, "g", 40, Compression::None).await;
    let lag: i64 = admin
        .group_lag("readers")
        .await
        .unwrap()
        .iter()
        .map(|l| l.lag)
        .sum();
    assert_eq!(lag, 40);
    let mut c = Consumer::new(make("range")).await.unwrap();
    c.subscribe(vec!["g".into()]).await.unwrap();
    let mut again = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while again.len() < 40 && std::time::Instant::now() < deadline {
        again.extend(c.poll_batch(100, Duration::from_millis(300)).await.unwrap());
    }
    assert_eq!(again.len(), 40, "only the records after the commits");
    c.close().await.unwrap();
    let groups = admin.list_groups().await.unwrap();
    assert!(groups
        .iter()
        .any(|(g, _, kind)| g == "readers" && kind == "classic"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_manages_topics_and_configs() {
    let dir = tempfile::tempdir().unwrap();
    let server = broker(dir.path()).await;
    let admin = Admin::connect(&server.local_addr.to_string())
        .await
        .unwrap();
    create(&admin, "adm", 2).await;
    let again = admin
        .create_topics(
            &[NewTopic {
                name: "adm".into(),
                partitions: 1,
                replication_factor: 1,
                configs: vec![],
            }],
            false,
        )
        .await
        .unwrap();
    assert!(matches!(
        &again[0],
        Err(Error::Kafka {
            error: kafka_protocol::error::ResponseError::TopicAlreadyExists,
            ..
        })
    ));
    admin.create_partitions("adm", 5).await.unwrap();
    assert_eq!(
        admin.describe_topic("adm").await.unwrap().partitions.len(),
        5
    );
    admin
        .alter_topic_configs("adm", &[("retention.ms".into(), Some("1234".into()))])
        .await
        .unwrap();
    let configs = admin.describe_configs("adm", false).await.unwrap();
    let retention = configs.iter().find(|c| c.name == "retention.ms").unwrap();
    assert_eq!(retention.value.as_deref(), Some("1234"));
    assert!(!retention.is_default);
    assert!(admin
        .list_topics()
        .await
        .unwrap()
        .iter()
        .any(|t| t.name == "adm"));
    admin.delete_topics(&["adm".into()]).await.unwrap()[0]
        .as_ref()
        .unwrap();
    assert!(matches!(
        admin.describe_topic("adm").await,
        Err(Error::UnknownTopic(_))
    ));
    server.shutdown().await;
}

type Events = std::sync::Arc<std::sync::Mutex<Vec<(char, &'static str, Vec<TopicPartition>)>>>;

/// Logs every callback and checks, across members, that no partition is assigned to one while
/// another still holds it.
struct Recorder {
    name: char,
    events: Events,
    owners: std::sync::Arc<std::sync::Mutex<BTreeMap<TopicPartition, char>>>,
}

impl RebalanceListener for Recorder {
    fn on_partitions_revoked(&mut self, ps: &[TopicPartition]) -> BTreeMap<TopicPartition, i64> {
        let mut owners = self.owners.lock().unwrap();
        for tp in ps {
            owners.remove(tp);
        }
        self.events
            .lock()
            .unwrap()
            .push((self.name, "revoked", ps.to_vec()));
        BTreeMap::new()
    }

    fn on_partitions_assigned(&mut self, ps: &[TopicPartition]) {
        let mut owners = self.owners.lock().unwrap();
        for tp in ps {
            if let Some(other) = owners.insert(tp.clone(), self.name) {
                self.events.lock().unwrap().push((
                    self.name,
                    "DOUBLE",
                    vec![(format!("{other}"), tp.1)],
                ));
            }
        }
        self.events
            .lock()
            .unwrap()
            .push((self.name, "assigned", ps.to_vec()));
    }

    fn on_partitions_lost(&mut self, ps: &[TopicPartition]) {
        self.events
            .lock()
            .unwrap()
            .push((self.name, "lost", ps.to_vec()));
    }
}

/// Member a reads a 4-partition topic alone, then b joins; returns the callbacks in order after
/// checking that every record was read exactly once and the final split is 2 + 2.
async fn second_member_joins(assignor: &str) -> Vec<(char, &'static str, Vec<TopicPartition>)> {
    let dir = tempfile::tempdir().unwrap();
    let server = broker(dir.path()).await;
    let bootstrap = server.local_addr.to_string();
    let admin = Admin::connect(&bootstrap).await.unwrap();
    create(&admin, "rb", 4).await;
    produce_keyed(&bootstrap, "rb", 400, Compression::None).await;
    let events: Events = Default::default();
    let owners = std::sync::Arc::new(std::sync::Mutex::new(BTreeMap::new()));
    let make = |name: char| {
        let mut c = ConsumerConfig::new(&bootstrap).with_group("rb-readers");
        c.auto_offset_reset = AutoOffsetReset::Earliest;
        c.session_timeout = Duration::from_secs(6);
        c.heartbeat_interval = Duration::from_millis(200);
        c.assignors = vec![assignor.to_string()];
        let recorder = Recorder {
            name,
            events: events.clone(),
            owners: owners.clone(),
        };
        (c, recorder)
    };
    let (config, recorder) = make('a');
    let mut a = Consumer::new(config).await.unwrap();
    a.set_rebalance_listener(Box::new(recorder));
    a.subscribe(vec!["rb".into()]).await.unwrap();
    let mut read = Vec::new();
    // a alone: take everything, read about half.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while read.len() < 200 && std::time::Instant::now() < deadline {
        read.extend(a.poll_batch(50, Duration::from_millis(200)).await.unwrap());
    }
    assert_eq!(a.assignment().len(), 4);
    // b joins in a task of its own: a member's poll must not wait on another's rebalance.
    let (config, recorder) = make('b');
    let read = std::sync::Arc::new(std::sync::Mutex::new(read));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let b_owns = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let b_task = {
        let (read, stop, b_owns) = (read.clone(), stop.clone(), b_owns.clone());
        tokio::spawn(async move {
            let mut b = Consumer::new(config).await.unwrap();
            b.set_rebalance_listener(Box::new(recorder));
            b.subscribe(vec!["rb".into()]).await.unwrap();
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                let batch = b.poll_batch(20, Duration::from_millis(200)).await.unwrap();
                read.lock().unwrap().extend(batch);
                b_owns.store(b.assignment().len(), std::sync::atomic::Ordering::Release);
            }
            b.close().await.unwrap();
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        let batch = a.poll_batch(20, Duration::from_millis(200)).await.unwrap();
        let total = {
            let mut read = read.lock().unwrap();
            read.extend(batch);
            read.len()
        };
        let b_owns = b_owns.load(std::sync::atomic::Ordering::Acquire);
        if total >= 400 && a.assignment().len() == 2 && b_owns == 2 {
            break;
        }
    }
    assert_eq!(a.assignment().len(), 2, "{:?}", events.lock().unwrap());
    a.close().await.unwrap();
    stop.store(true, std::sync::atomic::Ordering::Release);
    b_task.await.unwrap();
    let read = read.lock().unwrap().clone();
    let distinct: BTreeSet<(i32, i64)> = read.iter().map(|r| (r.partition, r.offset)).collect();
    assert_eq!(distinct.len(), 400, "every record read");
    assert_eq!(
        read.len(),
        400,
        "and none twice: revoked partitions were committed"
    );
    server.shutdown().await;
    let events = events.lock().unwrap().clone();
    assert!(
        events.iter().all(|e| e.1 != "DOUBLE" && e.1 != "lost"),
        "{events:?}"
    );
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_sticky_moves_only_what_it_must() {
    let events = second_member_joins("cooperative-sticky").await;
    let a_revoked: Vec<&Vec<TopicPartition>> = events
        .iter()
        .filter(|e| e.0 == 'a' && e.1 == "revoked")
        .map(|e| &e.2)
        .collect();
    // Before close: a gave up exactly the two partitions b took, nothing else.
    assert_eq!(a_revoked.first().map(|r| r.len()), Some(2), "{events:?}");
    // b's first partitions are exactly those (a's close later hands it the rest).
    let b_first: Vec<TopicPartition> = events
        .iter()
        .find(|e| e.0 == 'b' && e.1 == "assigned" && !e.2.is_empty())
        .map(|e| e.2.clone())
        .unwrap_or_default();
    let mut moved = a_revoked[0].clone();
    moved.sort();
    let mut taken = b_first;
    taken.sort();
    assert_eq!(moved, taken, "{events:?}");
    // a kept its other two throughout: its next revocation is its close.
    let a_kept = events
        .iter()
        .filter(|e| e.0 == 'a' && e.1 == "revoked")
        .nth(1)
        .map(|e| e.2.len());
    assert_eq!(a_kept, Some(2), "{events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eager_rebalance_revokes_everything_first() {
    let events = second_member_joins("range").await;
    let first_revoke = events
        .iter()
        .find(|e| e.0 == 'a' && e.1 == "revoked")
        .map(|e| e.2.len());
    assert_eq!(first_revoke, Some(4), "{events:?}");
}

/// Many small batches in flight at once per partition (pipelined): every record lands once, at
/// the offset its acknowledgement names, in the order it was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_batches_land_once_each_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = broker(dir.path()).await;
    let bootstrap = server.local_addr.to_string();
    let admin = Admin::connect(&bootstrap).await.unwrap();
    create(&admin, "piped", 2).await;
    let mut config = ProducerConfig::new(&bootstrap);
    config.batch_size = 1024;
    config.linger = Duration::ZERO;
    let producer = Producer::new(config).await.unwrap();
    let n = 20_000;
    let mut futures = Vec::new();
    for i in 0..n {
        let record = ProducerRecord::new("piped", format!("v-{i}")).with_partition(i % 2);
        futures.push(producer.send(record).await.unwrap());
    }
    let mut acked: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for f in futures {
        let m = f.await.unwrap();
        acked.entry(m.partition).or_default().push(m.offset);
    }
    producer.close().await;
    for (p, offsets) in &acked {
        let expected: Vec<i64> = (0..offsets.len() as i64).collect();
        assert_eq!(offsets, &expected, "partition {p}: acknowledged offsets");
    }
    let records = read_all(&bootstrap, "piped", 2, n as usize).await;
    assert_eq!(records.len(), n as usize);
    for r in &records {
        let i: i64 = String::from_utf8_lossy(r.value.as_deref().unwrap())[2..]
            .parse()
            .unwrap();
        assert_eq!(i % 2, r.partition as i64);
        assert_eq!(
            i / 2,
            r.offset,
            "record {i} of partition {} out of place",
            r.partition
        );
    }
    server.shutdown().await;
}
