//! `weir-log` owns one partition's log on disk.
//!
//! A [`Log`] is a sequence of [`segment::LogSegment`]s named by their base offset
//! (`<base-offset:020>.log|.index|.timeindex`), an epoch cache (`leader-epoch-checkpoint`) and the
//! state of idempotent producers. Batches are stored exactly as the producer sent them (RecordBatch
//! v2), with only the base offset and partition leader epoch patched in place. Reads return
//! [`FileSlice`]s so the broker can send file bytes to a socket without copying them.
//!
//! Every file is reached through [`Storage`]: the real file system ([`Disk`]) in the broker, a
//! fault-injecting disk in memory ([`SimDisk`]) in simulations and fuzzing.
//!
//! Invariants: offsets in the log only grow; `log_start_offset <= log_end_offset`; every byte
//! below a segment's recovered size is a whole, CRC-checked batch.
//!
//! This crate knows nothing of the network, of Kafka requests, or of other partitions.

pub mod batch;
pub mod checkpoint;
mod cleaner;
mod config;
pub mod decompress;
mod epoch;
pub mod file_cache;
mod flush;
mod index;
mod log;
mod lookup;
mod producer_state;
mod retention;
mod segment;
pub mod simfs;
mod snapshots;
pub mod storage;
#[cfg(test)]
mod tests;
pub mod txn;
mod unsynced;

pub use batch::BatchHeader;
pub use cleaner::{Compaction, CompactionStats};
pub use config::LogConfig;
pub use epoch::LeaderEpochCache;
pub use file_cache::FileCache;
pub use flush::SyncTarget;
pub use log::{AppendInfo, FetchInfo, FileSlice, Log, OpenSync, TimestampOffset};
pub use producer_state::{ProducerAppendOutcome, ProducerSummary};
pub use simfs::SimDisk;
pub use storage::{Disk, Storage, StoredFile};
pub use txn::{AbortedTxn, ControlType};

/// Errors of the log layer. The broker maps each to a Kafka error code in one place.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("corrupt record batch: {0}")]
    CorruptBatch(String),
    #[error("record batch magic {0} is not supported (only v2)")]
    UnsupportedMagic(i8),
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    RecordTooLarge { size: usize, max: usize },
    #[error("offset {offset} is out of range [{start}, {end}]")]
    OffsetOutOfRange {
        offset: Offset,
        start: Offset,
        end: Offset,
    },
    #[error("out of order sequence: producer {producer_id} expected {expected}, got {got}")]
    OutOfOrderSequence {
        producer_id: ProducerId,
        expected: i32,
        got: i32,
    },
    #[error("producer {producer_id} epoch {epoch} is older than the current {current}")]
    ProducerFenced {
        producer_id: ProducerId,
        epoch: ProducerEpoch,
        current: ProducerEpoch,
    },
    #[error("a marker for producer {producer_id} from coordinator epoch {coordinator_epoch} is older than {current}")]
    CoordinatorFenced {
        producer_id: ProducerId,
        coordinator_epoch: i32,
        current: i32,
    },
    #[error("a control batch cannot be produced by a client")]
    ControlBatchFromClient,
    #[error("producer {producer_id} has an open transaction and wrote a non-transactional batch")]
    InvalidTxnState { producer_id: ProducerId },
    #[error("the log directory has failed and accepts no more writes: {0}")]
    Poisoned(String),
    #[error("a record batch decompresses to more than {limit} bytes, the limit")]
    DecompressionLimit { limit: usize },
    /// A shortage that passes (a full disk, a quota, too many open files): the write was undone
    /// and the log is whole; the same write may succeed later.
    #[error("the write was undone for lack of space or file descriptors: {0}")]
    Shortage(std::io::Error),
}

impl LogError {
    /// Sorts an I/O error: a shortage that passes becomes [`LogError::Shortage`], anything else
    /// stays an I/O error (which poisons the log where it happened).
    pub fn from_io(e: std::io::Error) -> LogError {
        use rustix::io::Errno;
        if out_of_descriptors(&e) || errno_is(&e, &[Errno::NOSPC, Errno::DQUOT]) {
            LogError::Shortage(e)
        } else {
            LogError::Io(e)
        }
    }

    /// Sorts an fsync's error: only running out of descriptors (reopening a file whose handle
    /// left the cache) passes; ENOSPC or EIO from the fsync itself may have cost the unsynced
    /// pages, so they stay I/O errors and poison the log.
    pub fn from_fsync(e: std::io::Error) -> LogError {
        if out_of_descriptors(&e) {
            LogError::Shortage(e)
        } else {
            LogError::Io(e)
        }
    }
}

/// EMFILE or ENFILE: the process or the system is out of file descriptors.
pub(crate) fn out_of_descriptors(e: &std::io::Error) -> bool {
    use rustix::io::Errno;
    errno_is(e, &[Errno::MFILE, Errno::NFILE])
}

fn errno_is(e: &std::io::Error, errnos: &[rustix::io::Errno]) -> bool {
    errnos
        .iter()
        .any(|n| e.raw_os_error() == Some(n.raw_os_error()))
}

use weir_types::{Offset, ProducerEpoch, ProducerId};

pub type Result<T, E = LogError> = std::result::Result<T, E>;

/// Milliseconds since the Unix epoch, the unit of every Kafka timestamp.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
