//! Tests of the whole log: append/read/reopen properties, torn tails, retention, timestamps,
//! idempotent producers, and a crash test that kills a writer process at a random moment.

use std::path::Path;

use kafka_protocol::records::Compression;
use proptest::prelude::*;

use weir_types::{LeaderEpoch, Offset};

use crate::batch::tests::{make_batch, make_batch_with_producer};
use crate::batch::{validate_batches, BatchHeader};
use crate::{Log, LogConfig, LogError};

fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 600,
        index_interval_bytes: 100,
        ..LogConfig::default()
    }
}

/// Reads every batch from `from` to the end through `Log::read`, checking contiguity.
fn read_all(log: &Log, from: Offset) -> Vec<BatchHeader> {
    let mut out = Vec::new();
    let mut offset = from;
    while offset < log.log_end_offset() {
        let info = log.read(offset, 1000, log.log_end_offset(), true).unwrap();
        assert!(
            !info.slices.is_empty(),
            "no data at offset {offset} below the end {}",
            log.log_end_offset()
        );
        for slice in &info.slices {
            let bytes = slice.read_to_vec().unwrap();
            for h in validate_batches(&bytes).unwrap() {
                assert!(
                    Offset(h.last_offset()) >= offset,
                    "read returned a batch before the requested offset"
                );
                offset = h.end();
                out.push(h);
            }
        }
    }
    out
}

fn append(log: &mut Log, count: usize, ts: i64) -> crate::AppendInfo {
    let mut b = make_batch(count, ts, Compression::None);
    log.append_as_leader(&mut b, LeaderEpoch(0), ts).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn appends_read_back_and_survive_reopen(counts in proptest::collection::vec(1usize..6, 1..40), clean in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let mut expected = Vec::new();
        {
            let mut log = Log::open(dir.path(), small_config()).unwrap();
            let mut next = Offset::ZERO;
            for (i, &c) in counts.iter().enumerate() {
                let info = append(&mut log, c, i as i64 * 10);
                prop_assert_eq!(info.base_offset, next);
                next = next.plus(c as i64);
                expected.push((info.base_offset, info.last_offset));
            }
            prop_assert_eq!(log.log_end_offset(), next);
            if clean { log.close().unwrap(); }
        }
        let log = Log::open(dir.path(), small_config()).unwrap();
        let got: Vec<(Offset, Offset)> = read_all(&log, Offset::ZERO).iter().map(|h| (h.first(), Offset(h.last_offset()))).collect();
        prop_assert_eq!(&got, &expected);
        // Reading from the middle of any batch starts with that batch.
        for &(base, last) in &expected {
            let info = log.read(last, 1, log.log_end_offset(), true).unwrap();
            let first = BatchHeader::parse(&info.slices[0].read_to_vec().unwrap()).unwrap();
            prop_assert_eq!(first.first(), base);
        }
    }

    #[test]
    fn a_torn_tail_is_cut_to_the_last_whole_batch(counts in proptest::collection::vec(1usize..5, 2..20), cut in 1u64..200) {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig { segment_bytes: 1 << 20, ..LogConfig::default() };
        let mut ends = vec![0u64];
        {
            let mut log = Log::open(dir.path(), config.clone()).unwrap();
            for &c in &counts {
                append(&mut log, c, 0);
                ends.push(log.size_bytes());
            }
        }
        let path = dir.path().join(format!("{:020}.log", 0));
        let size = std::fs::metadata(&path).unwrap().len();
        let new_size = size.saturating_sub(cut);
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(new_size).unwrap();
        let whole = ends.iter().rposition(|&e| e <= new_size).unwrap();
        let mut log = Log::open(dir.path(), config).unwrap();
        prop_assert_eq!(log.size_bytes(), ends[whole]);
        let expected_end: usize = counts[..whole].iter().sum();
        prop_assert_eq!(log.log_end_offset(), Offset(expected_end as i64));
        prop_assert_eq!(read_all(&log, Offset::ZERO).len(), whole);
        let info = append(&mut log, 1, 0);
        prop_assert_eq!(info.base_offset, Offset(expected_end as i64));
    }
}

#[test]
fn a_corrupt_byte_in_the_tail_truncates_from_that_batch() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
        for _ in 0..5 {
            append(&mut log, 3, 0);
        }
    }
    let path = dir.path().join(format!("{:020}.log", 0));
    let mut bytes = std::fs::read(&path).unwrap();
    let batch = bytes.len() / 5;
    bytes[3 * batch + 40] ^= 0xff; // inside the fourth batch's CRC-covered part
    std::fs::write(&path, &bytes).unwrap();
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(log.log_end_offset(), Offset(9));
    assert_eq!(read_all(&log, Offset::ZERO).len(), 3);
}

#[test]
fn missing_or_garbage_indexes_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = Log::open(dir.path(), small_config()).unwrap();
        for i in 0..30 {
            append(&mut log, 2, i);
        }
        log.close().unwrap();
    }
    let mut removed = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        match path.extension().and_then(|e| e.to_str()) {
            Some("index") if removed % 2 == 0 => {
                std::fs::remove_file(&path).unwrap();
                removed += 1;
            }
            Some("index") | Some("timeindex") => {
                std::fs::write(&path, b"garbage").unwrap();
                removed += 1;
            }
            _ => {}
        }
    }
    assert!(removed > 2);
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.log_end_offset(), Offset(60));
    assert_eq!(read_all(&log, Offset::ZERO).len(), 30);
    assert_eq!(
        log.offset_for_timestamp(21).unwrap().unwrap().offset,
        Offset(41)
    );
}

#[test]
fn reads_respect_max_bytes_and_the_upper_bound() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    for _ in 0..10 {
        append(&mut log, 2, 0);
    }
    let one = log.read(Offset(0), 1, Offset(20), true).unwrap();
    let batch_size = one.bytes;
    assert_eq!(
        validate_batches(&one.slices[0].read_to_vec().unwrap())
            .unwrap()
            .len(),
        1
    );
    assert_eq!(log.read(Offset(0), 1, Offset(20), false).unwrap().bytes, 0);
    assert_eq!(
        log.read(Offset(0), batch_size * 3 + 1, Offset(20), false)
            .unwrap()
            .bytes,
        batch_size * 3
    );
    assert_eq!(
        log.read(Offset(0), u64::MAX, Offset(6), false)
            .unwrap()
            .bytes,
        batch_size * 3
    );
    assert_eq!(
        log.read(Offset(20), 1000, Offset(20), true).unwrap().bytes,
        0
    );
    assert!(matches!(
        log.read(Offset(21), 1000, Offset(20), true),
        Err(LogError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn retention_deletes_whole_closed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = small_config();
    config.retention_bytes = 1200;
    let mut log = Log::open(dir.path(), config).unwrap();
    for i in 0..40 {
        append(&mut log, 2, 1_000 + i);
    }
    let before = log.segment_count();
    assert!(before > 4);
    let deleted = log.enforce_retention(2_000).unwrap();
    assert!(deleted > 0);
    assert!(log.size_bytes() <= 1200 + 600);
    assert!(log.log_start_offset() > Offset::ZERO);
    assert_eq!(log.log_end_offset(), Offset(80));
    assert!(matches!(
        log.read(Offset(0), 100, Offset(80), true),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    let start = log.log_start_offset();
    assert_eq!(read_all(&log, start).last().unwrap().last_offset(), 79);

    // By time: everything closed is older than a day.
    let mut config = small_config();
    config.retention_ms = 1_000;
    log.set_config(config);
    log.enforce_retention(10_000_000).unwrap();
    assert_eq!(log.segment_count(), 1);
    drop(log);
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.log_end_offset(), Offset(80));
}

#[test]
fn delete_records_moves_the_start_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = Log::open(dir.path(), small_config()).unwrap();
        for _ in 0..20 {
            append(&mut log, 3, 0);
        }
        assert_eq!(log.delete_records_before(Offset(31)).unwrap(), Offset(31));
        assert!(log.delete_records_before(Offset(61)).is_err());
    }
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.log_start_offset(), Offset(31));
    assert!(log.read(Offset(30), 100, Offset(60), true).is_err());
    assert!(log.read(Offset(31), 100, Offset(60), true).is_ok());
}

#[test]
fn timestamps_find_the_first_record_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config()).unwrap();
    // Batch i holds 5 records with timestamps 1000*i .. 1000*i+4.
    for i in 0..20 {
        append(&mut log, 5, 1000 * i);
    }
    assert_eq!(
        log.offset_for_timestamp(0).unwrap().unwrap().offset,
        Offset(0)
    );
    assert_eq!(
        log.offset_for_timestamp(3002).unwrap().unwrap().offset,
        Offset(17)
    );
    assert_eq!(
        log.offset_for_timestamp(3005).unwrap().unwrap().offset,
        Offset(20)
    );
    assert!(log.offset_for_timestamp(1_000_000).unwrap().is_none());
    let max = log.max_timestamp_offset().unwrap().unwrap();
    assert_eq!((max.offset, max.timestamp), (Offset(99), 19_004));
}

#[test]
fn log_append_time_stamps_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(
        dir.path(),
        LogConfig {
            log_append_time: true,
            ..LogConfig::default()
        },
    )
    .unwrap();
    let mut b = make_batch(3, 5, Compression::None);
    let info = log.append_as_leader(&mut b, LeaderEpoch(0), 777).unwrap();
    assert_eq!(info.log_append_time_ms, 777);
    let h = &read_all(&log, Offset::ZERO)[0];
    assert_eq!(h.max_timestamp, 777);
    assert_eq!(
        log.offset_for_timestamp(700).unwrap().unwrap().offset,
        Offset(0)
    );
}

#[test]
fn idempotent_producers_are_deduplicated_and_ordered_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let batch =
        |seq: i32, epoch: i16| make_batch_with_producer(2, 0, Compression::None, 7, epoch, seq);
    {
        let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
        let first = log
            .append_as_leader(&mut batch(0, 0), LeaderEpoch(0), 0)
            .unwrap();
        assert!(!first.duplicate);
        let again = log
            .append_as_leader(&mut batch(0, 0), LeaderEpoch(0), 0)
            .unwrap();
        assert!(again.duplicate);
        assert_eq!(again.base_offset, first.base_offset);
        assert_eq!(log.log_end_offset(), Offset(2));
        assert!(matches!(
            log.append_as_leader(&mut batch(5, 0), LeaderEpoch(0), 0),
            Err(LogError::OutOfOrderSequence { .. })
        ));
        log.append_as_leader(&mut batch(2, 0), LeaderEpoch(0), 0)
            .unwrap();
    }
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    let retry = log
        .append_as_leader(&mut batch(2, 0), LeaderEpoch(0), 0)
        .unwrap();
    assert!(retry.duplicate);
    assert_eq!(retry.base_offset, Offset(2));
    log.append_as_leader(&mut batch(0, 1), LeaderEpoch(0), 0)
        .unwrap(); // new epoch starts at 0
    assert!(matches!(
        log.append_as_leader(&mut batch(4, 0), LeaderEpoch(0), 0),
        Err(LogError::ProducerFenced { .. })
    ));
    assert_eq!(log.log_end_offset(), Offset(6));
}

#[test]
fn leader_epochs_are_recorded_and_answered() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    let mut b = make_batch(3, 0, Compression::None);
    log.append_as_leader(&mut b, LeaderEpoch(0), 0).unwrap();
    let mut b = make_batch(3, 0, Compression::None);
    log.append_as_leader(&mut b, LeaderEpoch(2), 0).unwrap();
    assert_eq!(
        log.epochs()
            .end_offset_for(LeaderEpoch(0), log.log_end_offset()),
        Some((LeaderEpoch(0), Offset(3)))
    );
    assert_eq!(
        log.epochs()
            .end_offset_for(LeaderEpoch(1), log.log_end_offset()),
        Some((LeaderEpoch(0), Offset(3)))
    );
    assert_eq!(
        log.epochs()
            .end_offset_for(LeaderEpoch(2), log.log_end_offset()),
        Some((LeaderEpoch(2), Offset(6)))
    );
    log.truncate_to(Offset(2)).unwrap();
    assert_eq!(log.log_end_offset(), Offset(0));
}

/// Runs as a child process: appends batches forever, reporting each flushed log end offset.
#[test]
#[ignore = "child process of crash_test_kills_a_writer_at_random_moments"]
fn crash_writer_child() {
    use std::io::Write;
    let Ok(dir) = std::env::var("WEIR_CRASH_DIR") else {
        return;
    };
    let mut log = Log::open(Path::new(&dir), small_config()).unwrap();
    let mut stdout = std::io::stdout();
    for i in 0.. {
        let mut b = make_batch(1 + i % 4, i as i64, Compression::None);
        log.append_as_leader(&mut b, LeaderEpoch(0), 0).unwrap();
        if i % 7 == 0 {
            log.flush().unwrap();
            writeln!(stdout, "flushed {}", log.log_end_offset()).unwrap();
            stdout.flush().unwrap();
        }
    }
}

#[test]
fn crash_test_kills_a_writer_at_random_moments() {
    use rand::Rng;
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::thread_rng();
    for round in 0..4 {
        let dir = tempfile::tempdir().unwrap();
        let mut durable = Offset::ZERO;
        // Several lives per directory: each is killed mid-write, then the log must reopen intact.
        for _life in 0..3 {
            let mut child = Command::new(&exe)
                .args([
                    "--ignored",
                    "--exact",
                    "tests::crash_writer_child",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("WEIR_CRASH_DIR", dir.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let stdout = child.stdout.take().unwrap();
            let kill_after = std::time::Duration::from_millis(rng.gen_range(50..400));
            let reader = std::thread::spawn(move || {
                let mut last = Offset::ZERO;
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some(n) = line.strip_prefix("flushed ") {
                        last = n.trim().parse().map(Offset).unwrap_or(last);
                    }
                }
                last
            });
            std::thread::sleep(kill_after);
            child.kill().unwrap();
            child.wait().unwrap();
            let flushed = reader.join().unwrap();
            durable = durable.max(flushed);
            let log = Log::open(dir.path(), small_config()).unwrap();
            assert!(
                log.log_end_offset() >= durable,
                "round {round}: flushed up to {durable} but only {} survived",
                log.log_end_offset()
            );
            let batches = read_all(&log, Offset::ZERO);
            let mut expect = Offset::ZERO;
            for h in &batches {
                assert_eq!(
                    h.first(),
                    expect,
                    "round {round}: gap or overlap in the recovered log"
                );
                expect = h.end();
            }
            assert_eq!(expect, log.log_end_offset());
        }
    }
}

/// Copies `leader`'s batches from `from` on into `follower`, as a replica fetcher does.
fn replicate(leader: &Log, follower: &mut Log, from: Offset) {
    let info = leader
        .read(from, u64::MAX, leader.log_end_offset(), true)
        .unwrap();
    for slice in &info.slices {
        follower
            .append_as_follower(&slice.read_to_vec().unwrap(), 0)
            .unwrap();
    }
}

#[test]
fn a_follower_copies_batches_with_their_offsets_epochs_and_producers() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut leader = Log::open(dirs.0.path(), small_config()).unwrap();
    let mut follower = Log::open(dirs.1.path(), small_config()).unwrap();
    let batch = |seq: i32| make_batch_with_producer(2, 0, Compression::None, 9, 0, seq);
    leader
        .append_as_leader(&mut batch(0), LeaderEpoch(1), 0)
        .unwrap();
    leader
        .append_as_leader(&mut batch(2), LeaderEpoch(3), 0)
        .unwrap();
    for _ in 0..10 {
        append(&mut leader, 3, 5);
    }
    replicate(&leader, &mut follower, Offset::ZERO);
    while follower.log_end_offset() < leader.log_end_offset() {
        let from = follower.log_end_offset();
        replicate(&leader, &mut follower, from);
    }
    let ours: Vec<(i64, i32)> = read_all(&follower, Offset::ZERO)
        .iter()
        .map(|h| (h.base_offset, h.partition_leader_epoch))
        .collect();
    let theirs: Vec<(i64, i32)> = read_all(&leader, Offset::ZERO)
        .iter()
        .map(|h| (h.base_offset, h.partition_leader_epoch))
        .collect();
    assert_eq!(ours, theirs);
    assert_eq!(follower.epochs().entries(), leader.epochs().entries());
    // Promoted, the follower knows the producer's last batch: a retry is a duplicate.
    let retry = follower
        .append_as_leader(&mut batch(2), LeaderEpoch(4), 0)
        .unwrap();
    assert!(retry.duplicate);
    assert_eq!(retry.base_offset, Offset(2));
    // A batch that does not follow the log end is refused, and nothing is written.
    let end = follower.log_end_offset();
    let stale = leader
        .read(Offset(0), 1, leader.log_end_offset(), true)
        .unwrap();
    let bytes = stale.slices[0].read_to_vec().unwrap();
    assert!(matches!(
        follower.append_as_follower(&bytes, 0),
        Err(LogError::CorruptBatch(_))
    ));
    assert_eq!(follower.log_end_offset(), end);
    // Emptied and restarted at a later offset, it takes batches from there.
    follower.truncate_fully_and_start_at(Offset(20)).unwrap();
    assert_eq!(
        (follower.log_start_offset(), follower.log_end_offset()),
        (Offset(20), Offset(20))
    );
    assert!(follower.epochs().entries().is_empty());
    // Offset 20 lies inside the leader's batch 19-21: the follower starts at that batch.
    replicate(&leader, &mut follower, Offset(20));
    assert_eq!(follower.log_start_offset(), Offset(19));
    assert!(follower.log_end_offset() > Offset(20));
    drop(follower);
    let reopened = Log::open(dirs.1.path(), small_config()).unwrap();
    assert_eq!(reopened.log_start_offset(), Offset(19));
}

mod disk;
