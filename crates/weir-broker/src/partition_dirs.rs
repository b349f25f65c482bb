//! Partition directories on disk: `<data>/<topic>-<partition>/`, with the topic id in
//! `partition.metadata` (Kafka's file), and the opening of their logs.
//!
//! A directory holds the log of one topic id: a directory left by an older topic of the same name
//! is removed (durably) before the new topic's log is made there. `partition.metadata` is written
//! once, when the directory is made, so a restart reads it and writes nothing.
//!
//! Logs open in parallel, in eight groups ([`open_logs`]): each open reads its indexes and fsyncs (the clean
//! shutdown marker's removal, or the recovered tail), and a restart opens every log at once, so
//! the fsyncs of many logs are in flight together, as Kafka's `num.recovery.threads.per.data.dir`
//! does.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use uuid::Uuid;
use weir_log::storage::OpenMode;
use weir_log::storage::{self, Storage};
use weir_log::{Log, LogConfig, LogError, OpenSync};
use weir_types::{BrokerId, LeaderEpoch};

const PARTITION_METADATA: &str = "partition.metadata";

/// Threads that open logs at once in a broker; each waits on the disk more than on the CPU.
pub(crate) const OPEN_THREADS: usize = 8;

pub(crate) fn partition_dir(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

/// A partition the image places on this broker that has no log open yet: what opening it needs,
/// and the image's view of it to apply once it is open.
pub(crate) struct NewPartition {
    pub(crate) topic: String,
    pub(crate) index: i32,
    pub(crate) topic_id: Uuid,
    pub(crate) config: LogConfig,
    pub(crate) min_insync_replicas: usize,
    pub(crate) leader: Option<BrokerId>,
    pub(crate) leader_epoch: LeaderEpoch,
    pub(crate) replicas: Vec<BrokerId>,
    pub(crate) isr: Vec<BrokerId>,
}

/// Logs opened at once from which their fsyncs are deferred to one [`Storage::sync_all`]: a
/// broker's start, or a large topic's creation. Fewer open one by one, each fsyncing its own
/// writes, so a small change does not wait for the whole file system's dirty pages.
pub(crate) const BATCHED_OPEN: usize = 64;

/// Opens the logs of `partitions` (making their directories as needed), split among up to
/// `threads` threads; one result per partition, in order. Simulations pass 1: one thread keeps
/// a seeded run the same every time. From [`BATCHED_OPEN`] logs on, each open fsyncs nothing
/// and one sync of the file system follows them (a failure of it fails every log opened).
pub(crate) fn open_logs(
    storage: &Arc<dyn Storage>,
    data_dir: &Path,
    partitions: &[NewPartition],
    threads: usize,
) -> Vec<Result<Log, LogError>> {
    // The file system's sync begins before the opens write (see `Storage::sync_all`); without
    // it, each open fsyncs its own writes.
    let batch = (partitions.len() >= BATCHED_OPEN)
        .then(|| storage.sync_all(data_dir))
        .and_then(|s| {
            s.inspect_err(|e| tracing::warn!(error = %e, "no batched sync"))
                .ok()
        });
    let sync = if batch.is_some() {
        OpenSync::Deferred
    } else {
        OpenSync::Each
    };
    let open = |p: &NewPartition| open_log(storage, data_dir, p, sync);
    let mut opened: Vec<Result<Log, LogError>> = if threads <= 1 || partitions.len() < 2 * threads {
        partitions.iter().map(open).collect()
    } else {
        open_in_parallel(partitions, threads, open)
    };
    if let Some(batch) = batch {
        if let Err(e) = batch.sync() {
            tracing::error!(error = %e, "syncing the opened logs failed");
            let kind = e.kind();
            for log in opened.iter_mut().filter(|l| l.is_ok()) {
                if let Ok(log) = log {
                    log.note_failed_sync();
                }
                *log = Err(LogError::from_fsync(std::io::Error::new(
                    kind,
                    e.to_string(),
                )));
            }
        }
    }
    opened
}

fn open_in_parallel(
    partitions: &[NewPartition],
    threads: usize,
    open: impl Fn(&NewPartition) -> Result<Log, LogError> + Sync,
) -> Vec<Result<Log, LogError>> {
    let per_thread = partitions.len().div_ceil(threads);
    let panicked = || LogError::Io(std::io::Error::other("a log opener panicked"));
    let open = &open;
    std::thread::scope(|scope| {
        let workers: Vec<_> = partitions
            .chunks(per_thread)
            .map(|chunk| {
                let opened = move || chunk.iter().map(open).collect::<Vec<_>>();
                (
                    chunk,
                    std::thread::Builder::new().spawn_scoped(scope, opened),
                )
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|(chunk, worker)| match worker {
                Ok(worker) => worker
                    .join()
                    .unwrap_or_else(|_| chunk.iter().map(|_| Err(panicked())).collect()),
                // No thread to be had: this one opens the chunk itself.
                Err(_) => chunk.iter().map(open).collect(),
            })
            .collect()
    })
}

fn open_log(
    storage: &Arc<dyn Storage>,
    data_dir: &Path,
    p: &NewPartition,
    sync: OpenSync,
) -> Result<Log, LogError> {
    let dir = partition_dir(data_dir, &p.topic, p.index);
    let fs = &**storage;
    let exists = fs.exists(&dir);
    let stored_id = if exists {
        read_topic_id(fs, &dir)?
    } else {
        None
    };
    if exists && stored_id != Some(p.topic_id) {
        tracing::warn!(dir = %dir.display(), "removing a log left by an older topic of the same name");
        fs.remove_dir_all(&dir)?;
        storage::sync_parent(fs, &dir)?;
    }
    if stored_id != Some(p.topic_id) {
        write_topic_id(fs, &dir, p.topic_id, sync)?;
    }
    Log::open_with(storage.clone(), &dir, p.config.clone(), sync)
}

/// The topic id a partition directory was made for; `None` when it has none (a missing or
/// unreadable-as-text file). An I/O error is an error: it must not pass for another topic's log.
fn read_topic_id(fs: &dyn Storage, dir: &Path) -> std::io::Result<Option<Uuid>> {
    let Some(text) = storage::read_text(fs, &dir.join(PARTITION_METADATA))? else {
        return Ok(None);
    };
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("topic_id: "))
        .and_then(|id| Uuid::parse_str(id.trim()).ok()))
}

/// Writes `partition.metadata` in a new directory. Deferred, it is written in place: a torn file
/// names no topic, so its directory (which served nothing before the sync) is made again.
fn write_topic_id(fs: &dyn Storage, dir: &Path, id: Uuid, sync: OpenSync) -> std::io::Result<()> {
    let text = format!("version: 0\ntopic_id: {id}\n");
    let path = dir.join(PARTITION_METADATA);
    match sync {
        OpenSync::Each => {
            storage::create_dir_durably(fs, dir)?;
            storage::write_atomically(fs, &path, text.as_bytes())
        }
        OpenSync::Deferred => {
            fs.create_dir_all(dir)?;
            fs.open(&path, OpenMode::Truncate)?
                .write_all_at(text.as_bytes(), 0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_log::simfs::{Failure, Fault, FsOp};
    use weir_log::SimDisk;

    fn new_partition(index: i32) -> NewPartition {
        NewPartition {
            topic: "t".into(),
            index,
            topic_id: Uuid::from_u128(7),
            config: LogConfig::default(),
            min_insync_replicas: 1,
            leader: Some(BrokerId(1)),
            leader_epoch: LeaderEpoch(0),
            replicas: vec![BrokerId(1)],
            isr: vec![BrokerId(1)],
        }
    }

    #[test]
    fn logs_open_in_parallel_in_order_and_one_failure_spares_the_others() {
        let disk = SimDisk::new(1);
        let storage = disk.storage();
        let data = Path::new("/data");
        let partitions: Vec<NewPartition> = (0..40).map(new_partition).collect();
        disk.fail(Fault {
            op: FsOp::Open,
            path_contains: "/t-7/".into(),
            failure: Failure::Io,
            times: 1,
        });
        let opened = open_logs(&storage, data, &partitions, OPEN_THREADS);
        assert_eq!(opened.len(), 40);
        for (i, log) in opened.iter().enumerate() {
            match log {
                Ok(log) => assert_eq!(log.dir(), partition_dir(data, "t", i as i32)),
                Err(e) => assert_eq!(i, 7, "{e}"),
            }
        }
        assert!(opened[7].is_err());
        // Opened again, they find their topic id and write nothing new.
        drop(opened);
        let again = open_logs(&storage, data, &partitions, 1);
        assert!(again.iter().all(|l| l.is_ok()));
        let id = read_topic_id(&*storage, &partition_dir(data, "t", 3));
        assert_eq!(id.ok().flatten(), Some(Uuid::from_u128(7)));
    }

    #[test]
    fn many_logs_opened_together_are_durable_after_one_sync_of_the_disk() {
        let disk = SimDisk::new(2);
        let storage = disk.storage();
        let data = Path::new("/data");
        let partitions: Vec<NewPartition> = (0..BATCHED_OPEN as i32).map(new_partition).collect();
        let opened = open_logs(&storage, data, &partitions, 1);
        assert!(opened.iter().all(|l| l.is_ok()));
        drop(opened);
        // Nothing the opens wrote was fsynced on its own, yet all of it survives a power cut.
        disk.power_loss(weir_log::simfs::PowerLoss::DropUnsynced);
        for p in &partitions {
            let dir = partition_dir(data, &p.topic, p.index);
            let id = read_topic_id(&*storage, &dir);
            assert_eq!(id.ok().flatten(), Some(p.topic_id), "{}", dir.display());
        }
        // A failed sync fails every log of the batch: none may count as durable.
        disk.fail(Fault {
            op: FsOp::SyncDir,
            path_contains: "/data".into(),
            failure: Failure::Io,
            times: 1,
        });
        let again = open_logs(&storage, data, &partitions, 1);
        assert!(again.iter().all(|l| l.is_err()));
    }
}
