//! Transactions in one log: open transactions bound the LSO, markers end them, aborts are
//! indexed and survive reopening and truncation, and compaction ignores aborted records.

use bytes::BytesMut;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use weir_types::{LeaderEpoch, Offset, ProducerEpoch, ProducerId};

use super::{control_type, marker_batch, AbortedTxn, ControlType};
use crate::{Log, LogConfig, LogError};

const EPOCH: LeaderEpoch = LeaderEpoch(0);

/// A batch of `count` records from a producer, transactional or not, with keys `key`.
fn batch(pid: i64, epoch: i16, seq: i32, count: usize, transactional: bool, key: &str) -> Vec<u8> {
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: pid,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: seq + i as i32,
            timestamp: 1_000 + i as i64,
            key: Some(bytes::Bytes::from(key.to_string())),
            value: Some(bytes::Bytes::from(format!("{key}-{pid}-{seq}-{i}"))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.to_vec()
}

fn produce(log: &mut Log, bytes: Vec<u8>) -> Result<(Offset, Offset), LogError> {
    let mut bytes = bytes;
    let info = log.append_as_leader(&mut bytes, EPOCH, 1_000)?;
    Ok((info.base_offset, info.last_offset))
}

fn end(log: &mut Log, pid: i64, epoch: i16, kind: ControlType) -> Result<Offset, LogError> {
    let info = log.append_marker(ProducerId(pid), ProducerEpoch(epoch), 0, kind, EPOCH, 1_000)?;
    Ok(info.base_offset)
}

fn small() -> LogConfig {
    LogConfig {
        segment_bytes: 400,
        index_interval_bytes: 100,
        ..LogConfig::default()
    }
}

#[test]
fn a_marker_names_its_type() {
    for kind in [ControlType::Abort, ControlType::Commit] {
        let bytes = marker_batch(ProducerId(7), ProducerEpoch(2), 5, kind, 0).unwrap();
        assert_eq!(control_type(&bytes), Some(kind));
    }
    assert_eq!(control_type(&batch(7, 0, 0, 1, true, "k")), None);
}

#[test]
fn open_transactions_bound_the_lso_and_aborts_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    produce(&mut log, batch(-1, -1, -1, 2, false, "plain")).unwrap(); // 0..1
    let (a_first, _) = produce(&mut log, batch(1, 0, 0, 2, true, "a")).unwrap(); // 2..3
    let (b_first, _) = produce(&mut log, batch(2, 0, 0, 1, true, "b")).unwrap(); // 4
    produce(&mut log, batch(1, 0, 2, 1, true, "a")).unwrap(); // 5
    let hw = log.log_end_offset();
    assert_eq!(log.last_stable_offset(hw), a_first);
    assert_eq!(
        log.open_transactions(),
        vec![(ProducerId(1), a_first), (ProducerId(2), b_first)]
    );
    let abort_at = end(&mut log, 1, 0, ControlType::Abort).unwrap(); // 6
    assert_eq!(log.last_stable_offset(hw), b_first);
    assert_eq!(log.last_stable_offset(log.log_end_offset()), b_first);
    let commit_at = end(&mut log, 2, 0, ControlType::Commit).unwrap(); // 7
    assert_eq!(
        log.last_stable_offset(log.log_end_offset()),
        log.log_end_offset()
    );
    assert!(commit_at > abort_at);
    let aborted = log.aborted_transactions(Offset(0), log.log_end_offset());
    assert_eq!(
        aborted,
        vec![AbortedTxn {
            producer_id: ProducerId(1),
            first_offset: a_first,
            last_offset: abort_at,
            last_stable_offset: b_first,
        }]
    );
    // Only transactions that overlap the range.
    assert!(log.aborted_transactions(Offset(7), Offset(8)).is_empty());
    assert_eq!(log.aborted_transactions(Offset(0), Offset(3)).len(), 1);
    assert!(log.is_aborted(ProducerId(1), Offset(5)));
    assert!(!log.is_aborted(ProducerId(2), Offset(4)));
}

#[test]
fn fencing_and_misuse_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    produce(&mut log, batch(1, 3, 0, 1, true, "a")).unwrap();
    // A client may not write markers.
    let mut forged =
        marker_batch(ProducerId(1), ProducerEpoch(3), 0, ControlType::Commit, 0).unwrap();
    assert!(matches!(
        log.append_as_leader(&mut forged, EPOCH, 0),
        Err(LogError::ControlBatchFromClient)
    ));
    // Inside a transaction, only transactional batches.
    assert!(matches!(
        produce(&mut log, batch(1, 3, 1, 1, false, "a")),
        Err(LogError::InvalidTxnState { .. })
    ));
    // A marker from an older epoch is fenced.
    assert!(matches!(
        end(&mut log, 1, 2, ControlType::Abort),
        Err(LogError::ProducerFenced { .. })
    ));
    // A marker from a newer epoch (the coordinator bumped it) ends the transaction, and the
    // producer goes on at that epoch from sequence 0.
    end(&mut log, 1, 4, ControlType::Abort).unwrap();
    assert_eq!(log.first_unstable_offset(), None);
    produce(&mut log, batch(1, 4, 0, 1, true, "a")).unwrap();
    assert!(matches!(
        produce(&mut log, batch(1, 3, 5, 1, true, "a")),
        Err(LogError::ProducerFenced { .. })
    ));
}

#[test]
fn aborts_and_open_transactions_survive_reopening() {
    for clean in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let (aborted, open_first) = {
            let mut log = Log::open(dir.path(), small()).unwrap();
            for round in 0..6i32 {
                produce(&mut log, batch(1, 0, round * 2, 2, true, "a")).unwrap();
                let kind = if round % 2 == 0 {
                    ControlType::Abort
                } else {
                    ControlType::Commit
                };
                end(&mut log, 1, 0, kind).unwrap();
            }
            let (open_first, _) = produce(&mut log, batch(2, 0, 0, 3, true, "b")).unwrap();
            assert!(log.segment_count() > 2, "the test needs several segments");
            let aborted = log.aborted_transactions(Offset(0), log.log_end_offset());
            assert_eq!(aborted.len(), 3);
            if clean {
                log.close().unwrap();
            }
            (aborted, open_first)
        };
        let log = Log::open(dir.path(), small()).unwrap();
        assert_eq!(
            log.aborted_transactions(Offset(0), log.log_end_offset()),
            aborted
        );
        assert_eq!(log.first_unstable_offset(), Some(open_first));
        // The index files are Kafka's: 34 bytes an entry.
        let sizes: u64 = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".txnindex"))
            .map(|e| e.metadata().unwrap().len())
            .sum();
        assert_eq!(sizes, 34 * 3);
    }
}

#[test]
fn a_lost_index_is_rebuilt_from_the_log_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let aborted = {
        let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
        produce(&mut log, batch(1, 0, 0, 2, true, "a")).unwrap();
        end(&mut log, 1, 0, ControlType::Abort).unwrap();
        log.aborted_transactions(Offset(0), log.log_end_offset())
    };
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "txnindex") {
            std::fs::remove_file(path).unwrap();
        }
    }
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(
        log.aborted_transactions(Offset(0), log.log_end_offset()),
        aborted
    );
}

#[test]
fn truncation_drops_aborts_past_the_cut_and_reopens_the_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    let (first, _) = produce(&mut log, batch(1, 0, 0, 2, true, "a")).unwrap();
    let marker = end(&mut log, 1, 0, ControlType::Abort).unwrap();
    assert_eq!(log.aborted_transactions(Offset(0), Offset(10)).len(), 1);
    log.truncate_to(marker).unwrap();
    assert!(log.aborted_transactions(Offset(0), Offset(10)).is_empty());
    assert_eq!(log.first_unstable_offset(), Some(first));
    drop(log);
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert!(log.aborted_transactions(Offset(0), Offset(10)).is_empty());
    assert_eq!(log.first_unstable_offset(), Some(first));
}

#[test]
fn a_follower_learns_transactions_from_replicated_batches() {
    let leader_dir = tempfile::tempdir().unwrap();
    let follower_dir = tempfile::tempdir().unwrap();
    let mut leader = Log::open(leader_dir.path(), LogConfig::default()).unwrap();
    let mut follower = Log::open(follower_dir.path(), LogConfig::default()).unwrap();
    produce(&mut leader, batch(1, 0, 0, 2, true, "a")).unwrap();
    end(&mut leader, 1, 0, ControlType::Abort).unwrap();
    produce(&mut leader, batch(1, 0, 2, 1, true, "a")).unwrap();
    let info = leader
        .read(Offset(0), 1 << 20, leader.log_end_offset(), true)
        .unwrap();
    for slice in &info.slices {
        follower
            .append_as_follower(&slice.read_to_vec().unwrap(), 0)
            .unwrap();
    }
    assert_eq!(
        follower.aborted_transactions(Offset(0), Offset(10)),
        leader.aborted_transactions(Offset(0), Offset(10))
    );
    assert_eq!(follower.first_unstable_offset(), Some(Offset(3)));
}

#[test]
fn compaction_keeps_a_committed_value_over_an_aborted_or_open_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        cleanup_compact: true,
        ..small()
    };
    let mut log = Log::open(dir.path(), config).unwrap();
    produce(&mut log, batch(-1, -1, -1, 1, false, "k")).unwrap(); // 0: committed value
    produce(&mut log, batch(1, 0, 0, 1, true, "k")).unwrap(); // 1: aborted
    end(&mut log, 1, 0, ControlType::Abort).unwrap(); // 2
    produce(&mut log, batch(2, 0, 0, 1, true, "k")).unwrap(); // 3: still open
    for i in 0..6 {
        produce(&mut log, batch(-1, -1, -1, 1, false, &format!("other{i}"))).unwrap();
    }
    log.roll(2_000).unwrap();
    log.compact(2_000, 1 << 40).unwrap();
    let info = log.read(Offset(0), 1 << 20, Offset(1), true).unwrap();
    let bytes = info.slices[0].read_to_vec().unwrap();
    let first = crate::BatchHeader::parse(&bytes).unwrap();
    assert_eq!(
        first.base_offset, 0,
        "the committed value at offset 0 was removed"
    );
}

#[test]
fn a_deposed_coordinator_cannot_end_the_next_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    produce(&mut log, batch(1, 0, 0, 1, true, "a")).unwrap();
    // The new coordinator (epoch 5) ends the first transaction; the producer opens a second.
    log.append_marker(
        ProducerId(1),
        ProducerEpoch(0),
        5,
        ControlType::Commit,
        EPOCH,
        0,
    )
    .unwrap();
    let (second, _) = produce(&mut log, batch(1, 0, 1, 1, true, "a")).unwrap();
    // The old coordinator's late marker for the first must not end the second.
    assert!(matches!(
        log.append_marker(
            ProducerId(1),
            ProducerEpoch(0),
            4,
            ControlType::Commit,
            EPOCH,
            0
        ),
        Err(LogError::CoordinatorFenced { .. })
    ));
    assert_eq!(log.first_unstable_offset(), Some(second));
    // Known after a reopen too (from the snapshot or the replayed marker).
    log.roll(0).unwrap();
    drop(log);
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert!(matches!(
        log.append_marker(
            ProducerId(1),
            ProducerEpoch(0),
            4,
            ControlType::Abort,
            EPOCH,
            0
        ),
        Err(LogError::CoordinatorFenced { .. })
    ));
    assert_eq!(log.first_unstable_offset(), Some(second));
}
