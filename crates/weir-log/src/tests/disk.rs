//! The log on a simulated disk ([`crate::simfs::SimDisk`]): power cuts, failed writes and
//! fsyncs, a full disk, running out of descriptors, and what the next open makes of them.

use std::path::Path;

use kafka_protocol::records::Compression;

use weir_types::{LeaderEpoch, Offset};

use super::{append, read_all, small_config};
use crate::batch::tests::{make_batch, make_batch_with_producer};
use crate::batch::BatchHeader;
use crate::{Log, LogConfig, LogError};

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
            let cut = Offset((seed as i64 * 7) % synced_end.0);
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
            end >= truncated_end && end <= truncated_end.plus(10),
            "seed {seed} ({mode:?}): the log ends at {end}; synced to {synced_end}, cut to {truncated_end}"
        );
        let batches = read_all(&log, Offset::ZERO);
        assert_eq!(batches.last().map_or(Offset::ZERO, BatchHeader::end), end);
        // Everything below the cut is the original data: 30 batches of 1-3 records.
        let below: Vec<&BatchHeader> = batches
            .iter()
            .filter(|h| Offset(h.last_offset()) < truncated_end)
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
        log.append_as_leader(&mut b, LeaderEpoch(0), 50),
        Err(LogError::Shortage(_))
    ));
    assert!(matches!(
        log.delete_records_before(Offset(10)),
        Err(LogError::Shortage(_))
    ));
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset()),
        (Offset(0), end)
    );
    assert!(log.poisoned().is_none());
    disk.set_capacity(None);
    append(&mut log, 2, 60);
    assert_eq!(log.delete_records_before(Offset(10)).unwrap(), Offset(10));
    assert_eq!(log.log_end_offset(), end.plus(2));
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
    let mut ends = [Offset::ZERO; LOGS];
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
        match logs[i].append_as_leader(&mut b, LeaderEpoch(0), step as i64) {
            Ok(info) => ends[i] = info.last_offset.next(),
            Err(LogError::Shortage(_)) => shortages += 1,
            Err(e) => panic!("step {step}: log {i} failed: {e}"),
        }
        if step % 11 == 0 {
            ok_or_short(logs[i].flush(), &mut shortages, "flush");
        }
        if step % 37 == 0 && ends[i] > Offset(2) {
            let result = logs[i].truncate_to(Offset(ends[i].0 - 2));
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
        let read = read_all(log, Offset::ZERO);
        assert_eq!(read.last().map_or(Offset::ZERO, BatchHeader::end), ends[i]);
        before_close.push(read);
    }
    for log in logs.drain(..) {
        log.close().unwrap();
    }
    for (i, end) in ends.iter().enumerate() {
        let log = open(i);
        assert_eq!(log.log_end_offset(), *end);
        assert_eq!(
            read_all(&log, Offset::ZERO),
            before_close[i],
            "log {i} after reopen"
        );
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
    assert_eq!(log.log_end_offset(), Offset(2));
    assert_eq!(read_all(&log, Offset::ZERO).len(), 1);
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
    let before = read_all(&log, Offset::ZERO);
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
    assert_eq!(read_all(&log, Offset::ZERO), before);
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
    assert_eq!(read_all(&log, Offset::ZERO), before);
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
        match log.append_as_leader(&mut b, LeaderEpoch(0), written) {
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
    assert_eq!(log.log_end_offset(), Offset(written));
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
            log.append_as_leader(&mut batch(producer, seq), LeaderEpoch(0), 0)
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
        log.append_as_leader(&mut batch(7, 58), LeaderEpoch(0), 0)
            .unwrap()
            .duplicate
    );

    // Snapshots again (rolls), then a truncation below the newest: it goes, and the state is a
    // full scan's.
    for seq in (60..80).step_by(2) {
        log.append_as_leader(&mut batch(7, seq), LeaderEpoch(0), 0)
            .unwrap();
    }
    let newest: i64 = snapshots(&*storage).last().unwrap()[..20].parse().unwrap();
    log.truncate_to(Offset(newest - 3)).unwrap();
    assert!(snapshots(&*storage)
        .iter()
        .all(|n| n[..20].parse::<i64>().unwrap() <= log.log_end_offset().0));
    let truncated = log.producers.clone();
    assert_eq!(full_scan(&mut log), truncated);

    // A damaged newest snapshot is skipped.
    for seq in (0..20).step_by(2) {
        log.append_as_leader(&mut batch(9, seq), LeaderEpoch(0), 0)
            .unwrap();
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
    assert_eq!(log.load_producer_state().unwrap(), end.0);
    assert_eq!(log.unsnapshotted_bytes, 0);
    let state = log.producers.clone();
    assert_eq!(full_scan(&mut log), state);
}

/// A failed fsync is remembered on the disk. Linux marks the pages it failed to write clean: they
/// stay readable, so a restarted process finds the log whole, and its next fsyncs "succeed"
/// without writing them. The next open therefore rewrites the log from the last offset known
/// durable, so that a later power cut loses none of it and never leaves a hole before records
/// that survived (the replication simulation's seed 30 found such a hole in a follower).
#[test]
fn a_failed_fsync_is_made_good_by_the_next_open() {
    use crate::simfs::{Failure, Fault, FsOp, PowerLoss, SimDisk};
    let disk = SimDisk::new(8);
    let dir = Path::new("/data/t-0");
    let mut log = Log::open_on(disk.storage(), dir, small_config()).unwrap();
    for i in 0..3 {
        append(&mut log, 2, i);
    }
    log.flush().unwrap();
    for i in 3..6 {
        append(&mut log, 2, i);
    }
    disk.fail(Fault {
        op: FsOp::Sync,
        path_contains: ".log".into(),
        failure: Failure::Io,
        times: 1,
    });
    assert!(log.flush().is_err());
    assert!(log.poisoned().is_some());
    drop(log); // the process dies; its page cache lives on

    let mut log = Log::open_on(disk.storage(), dir, small_config()).unwrap();
    assert_eq!(
        log.log_end_offset(),
        Offset(12),
        "the page cache still holds it all"
    );
    // More records, over several segments, all fsynced.
    for i in 6..20 {
        append(&mut log, 2, i);
        log.flush().unwrap();
    }
    let all = read_all(&log, Offset::ZERO);
    drop(log);
    disk.power_loss(PowerLoss::DropUnsynced);
    let log = Log::open_on(disk.storage(), dir, small_config()).unwrap();
    assert_eq!(read_all(&log, Offset::ZERO), all);
    drop(log);
    // The rewrite is done once: the next opens find nothing to make good.
    assert!(!disk
        .files()
        .keys()
        .any(|p| p.ends_with(crate::unsynced::UNSYNCED_FILE)));
}

/// When the rewrite after a failed fsync finds a segment cut short (the disk lost pages the page
/// cache no longer holds), the segments after it go too: the log stays one contiguous run of
/// offsets.
#[test]
fn a_segment_found_cut_short_after_a_failed_fsync_ends_the_log() {
    use crate::simfs::SimDisk;
    use crate::storage::OpenMode;
    let disk = SimDisk::new(9);
    let dir = Path::new("/data/t-0");
    let mut log = Log::open_on(disk.storage(), dir, small_config()).unwrap();
    for i in 0..20 {
        append(&mut log, 2, i);
    }
    log.flush().unwrap();
    let all = read_all(&log, Offset::ZERO);
    log.close().unwrap();
    let storage = disk.storage();
    let mut segments: Vec<_> = disk
        .files()
        .into_keys()
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segments.sort();
    assert!(segments.len() >= 3, "{segments:?}");
    // The second segment lost its last batch; a failed fsync was recorded before.
    let file = storage.open(&segments[1], OpenMode::Existing).unwrap();
    let size = file.size().unwrap();
    file.set_len(size - 10).unwrap();
    drop(file);
    crate::unsynced::record(&*storage, dir, 0).unwrap();
    let log = Log::open_on(disk.storage(), dir, small_config()).unwrap();
    let kept = read_all(&log, Offset::ZERO);
    assert!(!kept.is_empty() && kept.len() < all.len());
    assert_eq!(kept[..], all[..kept.len()]);
    assert_eq!(log.log_end_offset(), kept.last().unwrap().end());
    let logs_left = disk
        .files()
        .into_keys()
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .count();
    assert_eq!(logs_left, 2);
}
