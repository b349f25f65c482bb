//! Tests of the whole log: append/read/reopen properties, torn tails, retention, timestamps,
//! idempotent producers, and a crash test that kills a writer process at a random moment.

use std::path::Path;

use kafka_protocol::records::Compression;
use proptest::prelude::*;

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
fn read_all(log: &Log, from: i64) -> Vec<BatchHeader> {
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
                    h.last_offset() >= offset,
                    "read returned a batch before the requested offset"
                );
                offset = h.last_offset() + 1;
                out.push(h);
            }
        }
    }
    out
}

fn append(log: &mut Log, count: usize, ts: i64) -> crate::AppendInfo {
    let mut b = make_batch(count, ts, Compression::None);
    log.append_as_leader(&mut b, 0, ts).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn appends_read_back_and_survive_reopen(counts in proptest::collection::vec(1usize..6, 1..40), clean in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let mut expected = Vec::new();
        {
            let mut log = Log::open(dir.path(), small_config()).unwrap();
            let mut next = 0i64;
            for (i, &c) in counts.iter().enumerate() {
                let info = append(&mut log, c, i as i64 * 10);
                prop_assert_eq!(info.base_offset, next);
                next += c as i64;
                expected.push((info.base_offset, info.last_offset));
            }
            prop_assert_eq!(log.log_end_offset(), next);
            if clean { log.close().unwrap(); }
        }
        let log = Log::open(dir.path(), small_config()).unwrap();
        let got: Vec<(i64, i64)> = read_all(&log, 0).iter().map(|h| (h.base_offset, h.last_offset())).collect();
        prop_assert_eq!(&got, &expected);
        // Reading from the middle of any batch starts with that batch.
        for &(base, last) in &expected {
            let info = log.read(last, 1, log.log_end_offset(), true).unwrap();
            let first = BatchHeader::parse(&info.slices[0].read_to_vec().unwrap()).unwrap();
            prop_assert_eq!(first.base_offset, base);
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
        prop_assert_eq!(log.log_end_offset(), expected_end as i64);
        prop_assert_eq!(read_all(&log, 0).len(), whole);
        let info = append(&mut log, 1, 0);
        prop_assert_eq!(info.base_offset, expected_end as i64);
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
    assert_eq!(log.log_end_offset(), 9);
    assert_eq!(read_all(&log, 0).len(), 3);
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
    assert_eq!(log.log_end_offset(), 60);
    assert_eq!(read_all(&log, 0).len(), 30);
    assert_eq!(log.offset_for_timestamp(21).unwrap().unwrap().offset, 41);
}

#[test]
fn reads_respect_max_bytes_and_the_upper_bound() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    for _ in 0..10 {
        append(&mut log, 2, 0);
    }
    let one = log.read(0, 1, 20, true).unwrap();
    let batch_size = one.bytes;
    assert_eq!(
        validate_batches(&one.slices[0].read_to_vec().unwrap())
            .unwrap()
            .len(),
        1
    );
    assert_eq!(log.read(0, 1, 20, false).unwrap().bytes, 0);
    assert_eq!(
        log.read(0, batch_size * 3 + 1, 20, false).unwrap().bytes,
        batch_size * 3
    );
    assert_eq!(
        log.read(0, u64::MAX, 6, false).unwrap().bytes,
        batch_size * 3
    );
    assert_eq!(log.read(20, 1000, 20, true).unwrap().bytes, 0);
    assert!(matches!(
        log.read(21, 1000, 20, true),
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
    assert!(log.log_start_offset() > 0);
    assert_eq!(log.log_end_offset(), 80);
    assert!(matches!(
        log.read(0, 100, 80, true),
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
    assert_eq!(log.log_end_offset(), 80);
}

#[test]
fn delete_records_moves_the_start_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = Log::open(dir.path(), small_config()).unwrap();
        for _ in 0..20 {
            append(&mut log, 3, 0);
        }
        assert_eq!(log.delete_records_before(31).unwrap(), 31);
        assert!(log.delete_records_before(61).is_err());
    }
    let log = Log::open(dir.path(), small_config()).unwrap();
    assert_eq!(log.log_start_offset(), 31);
    assert!(log.read(30, 100, 60, true).is_err());
    assert!(log.read(31, 100, 60, true).is_ok());
}

#[test]
fn timestamps_find_the_first_record_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config()).unwrap();
    // Batch i holds 5 records with timestamps 1000*i .. 1000*i+4.
    for i in 0..20 {
        append(&mut log, 5, 1000 * i);
    }
    assert_eq!(log.offset_for_timestamp(0).unwrap().unwrap().offset, 0);
    assert_eq!(log.offset_for_timestamp(3002).unwrap().unwrap().offset, 17);
    assert_eq!(log.offset_for_timestamp(3005).unwrap().unwrap().offset, 20);
    assert!(log.offset_for_timestamp(1_000_000).unwrap().is_none());
    let max = log.max_timestamp_offset().unwrap().unwrap();
    assert_eq!((max.offset, max.timestamp), (99, 19_004));
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
    let info = log.append_as_leader(&mut b, 0, 777).unwrap();
    assert_eq!(info.log_append_time_ms, 777);
    let h = &read_all(&log, 0)[0];
    assert_eq!(h.max_timestamp, 777);
    assert_eq!(log.offset_for_timestamp(700).unwrap().unwrap().offset, 0);
}

#[test]
fn idempotent_producers_are_deduplicated_and_ordered_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let batch =
        |seq: i32, epoch: i16| make_batch_with_producer(2, 0, Compression::None, 7, epoch, seq);
    {
        let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
        let first = log.append_as_leader(&mut batch(0, 0), 0, 0).unwrap();
        assert!(!first.duplicate);
        let again = log.append_as_leader(&mut batch(0, 0), 0, 0).unwrap();
        assert!(again.duplicate);
        assert_eq!(again.base_offset, first.base_offset);
        assert_eq!(log.log_end_offset(), 2);
        assert!(matches!(
            log.append_as_leader(&mut batch(5, 0), 0, 0),
            Err(LogError::OutOfOrderSequence { .. })
        ));
        log.append_as_leader(&mut batch(2, 0), 0, 0).unwrap();
    }
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    let retry = log.append_as_leader(&mut batch(2, 0), 0, 0).unwrap();
    assert!(retry.duplicate);
    assert_eq!(retry.base_offset, 2);
    log.append_as_leader(&mut batch(0, 1), 0, 0).unwrap(); // new epoch starts at 0
    assert!(matches!(
        log.append_as_leader(&mut batch(4, 0), 0, 0),
        Err(LogError::ProducerFenced { .. })
    ));
    assert_eq!(log.log_end_offset(), 6);
}

#[test]
fn leader_epochs_are_recorded_and_answered() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    let mut b = make_batch(3, 0, Compression::None);
    log.append_as_leader(&mut b, 0, 0).unwrap();
    let mut b = make_batch(3, 0, Compression::None);
    log.append_as_leader(&mut b, 2, 0).unwrap();
    assert_eq!(log.epochs().end_offset_for(0, log.log_end_offset()), (0, 3));
    assert_eq!(log.epochs().end_offset_for(1, log.log_end_offset()), (0, 3));
    assert_eq!(log.epochs().end_offset_for(2, log.log_end_offset()), (2, 6));
    log.truncate_to(2).unwrap();
    assert_eq!(log.log_end_offset(), 0);
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
        log.append_as_leader(&mut b, 0, 0).unwrap();
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
        let mut durable = 0i64;
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
                let mut last = 0i64;
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some(n) = line.strip_prefix("flushed ") {
                        last = n.trim().parse().unwrap_or(last);
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
            let batches = read_all(&log, 0);
            let mut expect = 0;
            for h in &batches {
                assert_eq!(
                    h.base_offset, expect,
                    "round {round}: gap or overlap in the recovered log"
                );
                expect = h.last_offset() + 1;
            }
            assert_eq!(expect, log.log_end_offset());
        }
    }
}

/// Copies `leader`'s batches from `from` on into `follower`, as a replica fetcher does.
fn replicate(leader: &Log, follower: &mut Log, from: i64) {
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
    leader.append_as_leader(&mut batch(0), 1, 0).unwrap();
    leader.append_as_leader(&mut batch(2), 3, 0).unwrap();
    for _ in 0..10 {
        append(&mut leader, 3, 5);
    }
    replicate(&leader, &mut follower, 0);
    while follower.log_end_offset() < leader.log_end_offset() {
        let from = follower.log_end_offset();
        replicate(&leader, &mut follower, from);
    }
    let ours: Vec<(i64, i32)> = read_all(&follower, 0)
        .iter()
        .map(|h| (h.base_offset, h.partition_leader_epoch))
        .collect();
    let theirs: Vec<(i64, i32)> = read_all(&leader, 0)
        .iter()
        .map(|h| (h.base_offset, h.partition_leader_epoch))
        .collect();
    assert_eq!(ours, theirs);
    assert_eq!(follower.epochs().entries(), leader.epochs().entries());
    // Promoted, the follower knows the producer's last batch: a retry is a duplicate.
    let retry = follower.append_as_leader(&mut batch(2), 4, 0).unwrap();
    assert!(retry.duplicate);
    assert_eq!(retry.base_offset, 2);
    // A batch that does not follow the log end is refused, and nothing is written.
    let end = follower.log_end_offset();
    let stale = leader.read(0, 1, leader.log_end_offset(), true).unwrap();
    let bytes = stale.slices[0].read_to_vec().unwrap();
    assert!(matches!(
        follower.append_as_follower(&bytes, 0),
        Err(LogError::CorruptBatch(_))
    ));
    assert_eq!(follower.log_end_offset(), end);
    // Emptied and restarted at a later offset, it takes batches from there.
    follower.truncate_fully_and_start_at(20).unwrap();
    assert_eq!(
        (follower.log_start_offset(), follower.log_end_offset()),
        (20, 20)
    );
    assert!(follower.epochs().entries().is_empty());
    // Offset 20 lies inside the leader's batch 19-21: the follower starts at that batch.
    replicate(&leader, &mut follower, 20);
    assert_eq!(follower.log_start_offset(), 19);
    assert!(follower.log_end_offset() > 20);
    drop(follower);
    let reopened = Log::open(dirs.1.path(), small_config()).unwrap();
    assert_eq!(reopened.log_start_offset(), 19);
}

/// On a simulated disk, what was fsynced survives any power cut whole, and a truncation is
/// never undone by one (cut-off segments and tails do not come back), however the unsynced
/// writes land.
#[test]
fn synced_records_and_truncations_survive_power_cuts() {
    use crate::simfs::{PowerLoss, SimDisk};
    let modes = [
        PowerLoss::DropUnsynced,
        PowerLoss::TornTail,
        PowerLoss::Scrambled,
    ];
    for seed in 0..60u64 {
        let disk = SimDisk::new(seed);
        let dir = Path::new("/data/t-0");
        let mode = modes[(seed % 3) as usize];
        let (synced_end, truncated_end) = {
            let mut log = Log::open_on(disk.storage(), dir, small_config()).unwrap();
            for i in 0..30 {
                append(&mut log, 1 + i % 3, i as i64);
            }
            log.flush().unwrap();
            let synced_end = log.log_end_offset();
            let cut = (seed as i64 * 7) % synced_end;
            log.truncate_to(cut).unwrap();
            let truncated_end = log.log_end_offset();
            assert!(truncated_end <= synced_end);
            // Unsynced appends after the cut, which the power cut may keep, tear or drop.
            for i in 0..5 {
                append(&mut log, 2, 100 + i);
            }
            (synced_end, truncated_end)
        };
        disk.power_loss(mode);
        let log = Log::open_on(disk.storage(), dir, small_config()).unwrap();
        let end = log.log_end_offset();
        assert!(
            end >= truncated_end && end <= truncated_end + 10,
            "seed {seed} ({mode:?}): the log ends at {end}; synced to {synced_end}, cut to {truncated_end}"
        );
        let batches = read_all(&log, 0);
        assert_eq!(batches.last().map_or(0, |h| h.last_offset() + 1), end);
        // Everything below the cut is the original data: 30 batches of 1-3 records.
        let below: Vec<&BatchHeader> = batches
            .iter()
            .filter(|h| h.last_offset() < truncated_end)
            .collect();
        assert!(below.iter().all(|h| h.records_count <= 3), "seed {seed}");
    }
}

/// A full disk refuses appends and DeleteRecords as a passing shortage: nothing moves, the log
/// is not failed, and both work once space returns.
#[test]
fn a_full_disk_refuses_without_failing_the_log() {
    use crate::simfs::SimDisk;
    let disk = SimDisk::new(1);
    let dir = Path::new("/data/t-0");
    let mut log = Log::open_on(disk.storage(), dir, small_config()).unwrap();
    for i in 0..20 {
        append(&mut log, 2, i);
    }
    let end = log.log_end_offset();
    disk.set_capacity(Some(disk.used_bytes()));
    let mut b = make_batch(2, 50, Compression::None);
    assert!(matches!(
        log.append_as_leader(&mut b, 0, 50),
        Err(LogError::Shortage(_))
    ));
    assert!(matches!(
        log.delete_records_before(10),
        Err(LogError::Shortage(_))
    ));
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, end));
    assert!(log.poisoned().is_none());
    disk.set_capacity(None);
    append(&mut log, 2, 60);
    assert_eq!(log.delete_records_before(10).unwrap(), 10);
    assert_eq!(log.log_end_offset(), end + 2);
}

/// Many logs share a few open files, and running out of descriptors at any moment is a passing
/// shortage: no log fails, and exactly the acknowledged batches read back, also after a reopen.
#[test]
fn logs_sharing_a_few_open_files_survive_running_out_of_descriptors() {
    use crate::simfs::{Failure, Fault, FsOp, SimDisk};
    use crate::{FileCache, Storage};
    use std::sync::Arc;
    const LOGS: usize = 12;
    let disk = SimDisk::new(3);
    let storage: Arc<dyn Storage> = Arc::new(FileCache::new(disk.storage(), 4));
    let dir = |i: usize| Path::new("/data").join(format!("t-{i}"));
    let open = |i: usize| Log::open_on(storage.clone(), &dir(i), small_config()).unwrap();
    let mut logs: Vec<Log> = (0..LOGS).map(open).collect();
    let mut ends = [0i64; LOGS];
    let mut shortages = 0;
    let ok_or_short = |result: crate::Result<()>, shortages: &mut i32, what: &str| match result {
        Ok(()) => {}
        Err(LogError::Shortage(_)) => *shortages += 1,
        Err(e) => panic!("{what}: {e}"),
    };
    for step in 0..600u64 {
        let i = (step * 7 % LOGS as u64) as usize;
        if step % 5 == 0 {
            // Runs of EMFILE long enough to outlast the cache's retry and an undo's reopening.
            disk.clear_faults();
            disk.fail(Fault {
                op: FsOp::Open,
                path_contains: ["", ".log", ".index", ".timeindex"][(step / 5 % 4) as usize].into(),
                failure: Failure::TooManyFiles,
                times: 1 + (step / 20 % 6) as u32,
            });
        }
        let mut b = make_batch(1 + (step % 3) as usize, step as i64, Compression::None);
        match logs[i].append_as_leader(&mut b, 0, step as i64) {
            Ok(info) => ends[i] = info.last_offset + 1,
            Err(LogError::Shortage(_)) => shortages += 1,
            Err(e) => panic!("step {step}: log {i} failed: {e}"),
        }
        if step % 11 == 0 {
            ok_or_short(logs[i].flush(), &mut shortages, "flush");
        }
        if step % 37 == 0 && ends[i] > 2 {
            let result = logs[i].truncate_to(ends[i] - 2);
            ok_or_short(result, &mut shortages, "truncate");
            ends[i] = logs[i].log_end_offset();
        }
        assert_eq!(logs[i].log_end_offset(), ends[i], "step {step}");
        assert!(logs[i].poisoned().is_none(), "step {step}: log {i} failed");
    }
    disk.clear_faults();
    assert!(shortages > 20, "only {shortages} shortages");
    assert!(disk.open_files() <= 4, "{} files open", disk.open_files());
    let mut before_close = Vec::new();
    for (i, log) in logs.iter().enumerate() {
        let read = read_all(log, 0);
        assert_eq!(read.last().map_or(0, |h| h.last_offset() + 1), ends[i]);
        before_close.push(read);
    }
    for log in logs.drain(..) {
        log.close().unwrap();
    }
    for (i, end) in ends.iter().enumerate() {
        let log = open(i);
        assert_eq!(log.log_end_offset(), *end);
        assert_eq!(read_all(&log, 0), before_close[i], "log {i} after reopen");
    }
}

/// A replicated batch too far past its segment's base for an index entry (offsets that jump by
/// more than u32) is refused whole; before, its index entry wrapped and sent reads astray.
#[test]
fn a_batch_out_of_an_index_s_reach_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config()).unwrap();
    let mut first = make_batch(2, 10, Compression::None);
    crate::batch::set_base_offset(&mut first, 0);
    log.append_as_follower(&first, 0).unwrap();
    let mut far = make_batch(1, 20, Compression::None);
    crate::batch::set_base_offset(&mut far, 1 << 33);
    assert!(matches!(
        log.append_as_follower(&far, 0),
        Err(LogError::CorruptBatch(_))
    ));
    assert!(log.poisoned().is_none());
    assert_eq!(log.log_end_offset(), 2);
    assert_eq!(read_all(&log, 0).len(), 1);
}

/// Recovering the active segment after a crash rewrites its indexes only where they differ from
/// what the scan finds: an intact segment's index files are not written at all (a truncation
/// and rewrite per log made a broker's start slow), and damaged ones are still repaired.
#[test]
fn recovery_leaves_intact_indexes_unwritten_and_repairs_damaged_ones() {
    use crate::simfs::{Failure, Fault, FsOp, SimDisk};
    let disk = SimDisk::new(4);
    let dir = Path::new("/data/t-0");
    let mut log = Log::open_on(disk.storage(), dir, small_config()).unwrap();
    for i in 0..6 {
        append(&mut log, 2, i);
    }
    let before = read_all(&log, 0);
    drop(log); // unclean: no marker, so the active segment is recovered
    let index_of = |disk: &SimDisk| {
        disk.files()
            .into_iter()
            .filter(|(p, _)| {
                p.extension()
                    .is_some_and(|e| e == "index" || e == "timeindex")
            })
            .collect::<Vec<_>>()
    };
    let indexes = index_of(&disk);
    assert!(indexes.iter().any(|(_, bytes)| !bytes.is_empty()));
    for op in [FsOp::Write, FsOp::SetLen] {
        disk.fail(Fault {
            op,
            path_contains: "index".into(),
            failure: Failure::Io,
            times: 1,
        });
    }
    let log = Log::open_on(disk.storage(), dir, small_config()).unwrap();
    assert_eq!(read_all(&log, 0), before);
    assert_eq!(index_of(&disk), indexes);
    drop(log);
    disk.clear_faults();
    // A lost tail of entries is written again from where it differs.
    let (path, bytes) = indexes
        .iter()
        .find(|(p, b)| p.extension().is_some_and(|e| e == "index") && b.len() >= 16)
        .unwrap()
        .clone();
    let storage = disk.storage();
    let file = storage
        .open(&path, crate::storage::OpenMode::Existing)
        .unwrap();
    file.set_len(8).unwrap();
    drop(file);
    let log = Log::open_on(disk.storage(), dir, small_config()).unwrap();
    assert_eq!(read_all(&log, 0), before);
    assert_eq!(disk.files()[&path], bytes);
}

/// An append that adds no index entry touches the `.log` file alone: with the indexes out of
/// the file cache and unopenable, small appends still succeed, and the first one that needs an
/// entry is refused as a passing shortage.
#[test]
fn appends_between_index_entries_open_only_the_log_file() {
    use crate::simfs::{Failure, Fault, FsOp, SimDisk};
    use crate::FileCache;
    let disk = SimDisk::new(5);
    let storage: std::sync::Arc<dyn crate::Storage> =
        std::sync::Arc::new(FileCache::new(disk.storage(), 1));
    let config = LogConfig {
        index_interval_bytes: 10_000,
        ..LogConfig::default()
    };
    let mut log = Log::open_on(storage, Path::new("/data/t-0"), config).unwrap();
    append(&mut log, 1, 0); // the segment's first entry
    disk.fail(Fault {
        op: FsOp::Open,
        path_contains: "index".into(),
        failure: Failure::TooManyFiles,
        times: u32::MAX,
    });
    let mut written = 1;
    let refused = loop {
        let mut b = make_batch(1, written, Compression::None);
        match log.append_as_leader(&mut b, 0, written) {
            Ok(_) => written += 1,
            Err(e) => break e,
        }
        assert!(written < 1000, "no append ever needed an index entry");
    };
    assert!(
        written > 10,
        "only {written} appends passed without the indexes"
    );
    assert!(matches!(refused, LogError::Shortage(_)), "{refused}");
    assert!(log.poisoned().is_none());
    assert_eq!(log.log_end_offset(), written);
}

/// Producer-state snapshots: an open scans only the batches after the latest one and ends in
/// the state a full scan finds; a truncation below a snapshot removes it; a damaged snapshot
/// falls back to an older one or a full scan; a clean close of a log with enough unsnapshotted
/// bytes leaves one at its end, so the next open scans nothing.
#[test]
fn producer_snapshots_shorten_the_scan_and_agree_with_a_full_one() {
    use crate::simfs::SimDisk;
    let disk = SimDisk::new(6);
    let storage = disk.storage();
    let dir = Path::new("/data/t-0");
    let batch = |producer: i64, seq: i32| {
        make_batch_with_producer(2, 0, Compression::None, producer, 0, seq)
    };
    let mut log = Log::open_on(storage.clone(), dir, small_config()).unwrap();
    for seq in (0..60).step_by(2) {
        for producer in [7, 8] {
            log.append_as_leader(&mut batch(producer, seq), 0, 0)
                .unwrap();
        }
    }
    assert!(log.segment_count() > 3);
    drop(log); // unclean
    let snapshots = |storage: &dyn crate::Storage| -> Vec<String> {
        let mut names: Vec<String> = storage
            .list(dir)
            .unwrap()
            .into_iter()
            .filter(|n| n.ends_with(".snapshot"))
            .collect();
        names.sort();
        names
    };
    let full_scan = |log: &mut Log| {
        for name in snapshots(&*log.storage) {
            log.storage.remove_file(&dir.join(name)).unwrap();
        }
        assert_eq!(log.load_producer_state().unwrap(), i64::MIN);
        log.producers.clone()
    };

    let mut log = Log::open_on(storage.clone(), dir, small_config()).unwrap();
    assert_eq!(snapshots(&*storage).len(), 2, "the newest two are kept");
    let from = log.load_producer_state().unwrap();
    let last_base = *log.segments.keys().next_back().unwrap();
    assert_eq!(from, last_base, "the scan starts at the last roll");
    let with_snapshot = log.producers.clone();
    assert_eq!(full_scan(&mut log), with_snapshot);
    // A retry of the last batch is still known after the reopen.
    assert!(
        log.append_as_leader(&mut batch(7, 58), 0, 0)
            .unwrap()
            .duplicate
    );

    // Snapshots again (rolls), then a truncation below the newest: it goes, and the state is a
    // full scan's.
    for seq in (60..80).step_by(2) {
        log.append_as_leader(&mut batch(7, seq), 0, 0).unwrap();
    }
    let newest: i64 = snapshots(&*storage).last().unwrap()[..20].parse().unwrap();
    log.truncate_to(newest - 3).unwrap();
    assert!(snapshots(&*storage)
        .iter()
        .all(|n| n[..20].parse::<i64>().unwrap() <= log.log_end_offset()));
    let truncated = log.producers.clone();
    assert_eq!(full_scan(&mut log), truncated);

    // A damaged newest snapshot is skipped.
    for seq in (0..20).step_by(2) {
        log.append_as_leader(&mut batch(9, seq), 0, 0).unwrap();
    }
    let names = snapshots(&*storage);
    let damaged = dir.join(names.last().unwrap());
    let file = storage
        .open(&damaged, crate::storage::OpenMode::Existing)
        .unwrap();
    file.write_all_at(b"XXXX", 10).unwrap();
    drop(file);
    let older: i64 = names[names.len() - 2][..20].parse().unwrap();
    assert_eq!(log.load_producer_state().unwrap(), older);
    let state = log.producers.clone();
    assert_eq!(full_scan(&mut log), state);

    // A clean close past the threshold leaves a snapshot at the end: the next open scans nothing.
    log.unsnapshotted_bytes = crate::snapshots::AT_CLOSE_BYTES;
    let end = log.log_end_offset();
    log.close().unwrap();
    let mut log = Log::open_on(storage.clone(), dir, small_config()).unwrap();
    assert_eq!(log.load_producer_state().unwrap(), end);
    assert_eq!(log.unsnapshotted_bytes, 0);
    let state = log.producers.clone();
    assert_eq!(full_scan(&mut log), state);
}
