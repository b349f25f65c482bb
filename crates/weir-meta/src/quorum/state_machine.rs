//! The state machine: committed batches applied to a [`MetadataImage`], and snapshots of it.
//!
//! A snapshot is the list of records that rebuilds the image ([`MetadataImage::to_records`]),
//! kept in `<raft dir>/snapshot` (JSON of its metadata and records, replaced atomically). On open
//! the image is rebuilt from the snapshot; openraft then re-applies committed entries after it.
//! Every change of the image is published on a watch channel for the broker to act on.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::RaftStateMachine;
use openraft::{
    EntryPayload, ErrorSubject, ErrorVerb, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{io_err, write_atomically, Applied, NodeId, TypeConfig};
use crate::image::MetadataImage;
use crate::records::MetadataRecord;

type Result<T> = std::result::Result<T, StorageError<NodeId>>;
type Meta = SnapshotMeta<NodeId, openraft::BasicNode>;

/// What a snapshot file holds.
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotFile {
    meta: Meta,
    records: Vec<MetadataRecord>,
}

/// The applied image of one voter. Clones share it (the snapshot builder is a clone).
#[derive(Debug, Clone)]
pub struct StateMachine {
    inner: Arc<Mutex<Inner>>,
    published: watch::Sender<Arc<MetadataImage>>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    image: MetadataImage,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, openraft::BasicNode>,
    /// The latest snapshot's metadata and bytes (the records as JSON).
    snapshot: Option<(Meta, Vec<u8>)>,
    snapshots_built: u64,
}

fn rebuild(records: &[MetadataRecord], last: Option<LogId<NodeId>>) -> MetadataImage {
    let mut image = MetadataImage::default();
    for r in records {
        image.apply(r);
    }
    image.version = last.map_or(0, |l| l.index);
    image
}

impl StateMachine {
    /// Opens the state machine in `dir`, from its snapshot when there is one.
    pub fn open(dir: &Path) -> std::io::Result<StateMachine> {
        std::fs::create_dir_all(dir)?;
        let mut inner = Inner {
            dir: dir.to_path_buf(),
            image: MetadataImage::default(),
            last_applied: None,
            membership: StoredMembership::default(),
            snapshot: None,
            snapshots_built: 0,
        };
        match std::fs::read(dir.join("snapshot")) {
            Ok(bytes) => {
                let file: SnapshotFile = serde_json::from_slice(&bytes)
                    .map_err(|e| std::io::Error::other(format!("metadata snapshot: {e}")))?;
                inner.image = rebuild(&file.records, file.meta.last_log_id);
                inner.last_applied = file.meta.last_log_id;
                inner.membership = file.meta.last_membership.clone();
                let data = serde_json::to_vec(&file.records).map_err(std::io::Error::other)?;
                inner.snapshot = Some((file.meta, data));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let (published, _) = watch::channel(Arc::new(inner.image.clone()));
        Ok(StateMachine {
            inner: Arc::new(Mutex::new(inner)),
            published,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Follows the image: the receiver sees each new version.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.published.subscribe()
    }

    fn publish(&self, image: &MetadataImage) {
        self.published.send_replace(Arc::new(image.clone()));
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>> {
        let mut inner = self.lock();
        let records = inner.image.to_records();
        let data = serde_json::to_vec(&records)
            .map_err(|e| io_err(ErrorSubject::StateMachine, ErrorVerb::Write, e))?;
        inner.snapshots_built += 1;
        let meta = Meta {
            last_log_id: inner.last_applied,
            last_membership: inner.membership.clone(),
            snapshot_id: format!(
                "{}-{}",
                inner.last_applied.map_or(0, |l| l.index),
                inner.snapshots_built
            ),
        };
        let file = serde_json::to_vec(&SnapshotFile {
            meta: meta.clone(),
            records,
        })
        .map_err(|e| io_err(ErrorSubject::StateMachine, ErrorVerb::Write, e))?;
        write_atomically(&inner.dir.join("snapshot"), &file)
            .map_err(|e| io_err(ErrorSubject::StateMachine, ErrorVerb::Write, e))?;
        inner.snapshot = Some((meta.clone(), data.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(
        Option<LogId<NodeId>>,
        StoredMembership<NodeId, openraft::BasicNode>,
    )> {
        let inner = self.lock();
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>>
    where
        I: IntoIterator<Item = openraft::Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut inner = self.lock();
        let mut out = Vec::new();
        for entry in entries {
            inner.last_applied = Some(entry.log_id);
            inner.image.version = entry.log_id.index;
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(batch) => {
                    for record in &batch.records {
                        inner.image.apply(record);
                    }
                }
                EntryPayload::Membership(m) => {
                    inner.membership = StoredMembership::new(Some(entry.log_id), m);
                }
            }
            out.push(Applied {
                version: inner.image.version,
            });
        }
        self.publish(&inner.image);
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<()> {
        let data = snapshot.into_inner();
        let records: Vec<MetadataRecord> = serde_json::from_slice(&data).map_err(|e| {
            io_err(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Read,
                e,
            )
        })?;
        let mut inner = self.lock();
        let file = serde_json::to_vec(&SnapshotFile {
            meta: meta.clone(),
            records: records.clone(),
        })
        .map_err(|e| io_err(ErrorSubject::StateMachine, ErrorVerb::Write, e))?;
        write_atomically(&inner.dir.join("snapshot"), &file)
            .map_err(|e| io_err(ErrorSubject::StateMachine, ErrorVerb::Write, e))?;
        inner.image = rebuild(&records, meta.last_log_id);
        inner.last_applied = meta.last_log_id;
        inner.membership = meta.last_membership.clone();
        inner.snapshot = Some((meta.clone(), data));
        self.publish(&inner.image);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>> {
        let inner = self.lock();
        Ok(inner.snapshot.as_ref().map(|(meta, data)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(Cursor::new(data.clone())),
        }))
    }
}
