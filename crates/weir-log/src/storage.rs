//! The file system under a log, behind a trait: the real one ([`Disk`]) and, for simulations and
//! fuzzing, a fault-injecting one in memory ([`crate::simfs::SimDisk`]) that loses unsynced
//! writes at a power cut, tears the last write, and fails chosen operations.
//!
//! The trait holds only what the log needs, with POSIX meanings: data reaches the disk at
//! `sync_data`; a name (a new file, a rename, a removal) reaches it when its directory is synced.

use std::fmt::Debug;
use std::io::{self, ErrorKind};
use std::path::Path;
use std::sync::Arc;

/// How [`Storage::open`] treats the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// The file must exist.
    Existing,
    /// Created empty if missing; kept as it is otherwise.
    Create,
    /// Created, or emptied if it exists.
    Truncate,
}

/// A directory tree of files.
pub trait Storage: Send + Sync + Debug {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Names of the entries of `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    fn exists(&self, path: &Path) -> bool;
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StoredFile>>;
    /// The whole file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    fn remove_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Replaces `to` with `from`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the entries of `dir` (created, renamed and removed names) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Starts a sync of everything under `dir`, data and names, at once: [`SyncAll::sync`],
    /// called after the writes, makes them durable. On a real disk it is syncfs(2) (covering the
    /// whole file system holding `dir`) on a descriptor opened now, since syncfs reports only
    /// the write-back errors that happen after its descriptor was opened (Linux 5.8 and later).
    /// One call replaces the fsyncs of many files written together, as when a broker opens
    /// every log.
    fn sync_all(&self, dir: &Path) -> io::Result<SyncAll>;
}

/// A sync of a whole file system, begun by [`Storage::sync_all`] before the writes it covers.
pub struct SyncAll(Box<dyn FnOnce() -> io::Result<()> + Send>);

impl SyncAll {
    pub fn new(sync: impl FnOnce() -> io::Result<()> + Send + 'static) -> SyncAll {
        SyncAll(Box::new(sync))
    }

    /// Makes everything written since it began durable.
    pub fn sync(self) -> io::Result<()> {
        (self.0)()
    }
}

impl Debug for SyncAll {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SyncAll")
    }
}

/// An open file, read and written at positions (never through a shared cursor).
pub trait StoredFile: Send + Sync + Debug {
    fn read_exact_at(&self, buf: &mut [u8], position: u64) -> io::Result<()>;
    fn write_all_at(&self, buf: &[u8], position: u64) -> io::Result<()>;
    fn size(&self) -> io::Result<u64>;
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes the file's data durable.
    fn sync_data(&self) -> io::Result<()>;
    /// The operating system's file, for sendfile(2); `None` for a file in memory.
    fn os_file(&self) -> Option<&std::fs::File> {
        None
    }
    /// The open handle underneath, for a reader that must keep seeing this very file (a fetch
    /// sent later, an fsync outside the log's lock) even if its name is replaced or its handle
    /// leaves a cache meanwhile. `None` when this already is that handle.
    fn pinned(&self) -> io::Result<Option<Arc<dyn StoredFile>>> {
        Ok(None)
    }
    /// What the file is, whatever its name: device and inode. A file opened again by name is
    /// the same file only if this matches (`None` when it cannot be told).
    fn identity(&self) -> Option<(u64, u64)> {
        None
    }
}

/// `file`'s open handle underneath (see [`StoredFile::pinned`]).
pub fn pin(file: &Arc<dyn StoredFile>) -> io::Result<Arc<dyn StoredFile>> {
    Ok(file.pinned()?.unwrap_or_else(|| file.clone()))
}

/// The real file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct Disk;

impl Disk {
    /// The real file system, as the storage of a log.
    pub fn shared() -> Arc<dyn Storage> {
        Arc::new(Disk)
    }
}

impl Storage for Disk {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StoredFile>> {
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(true);
        match mode {
            OpenMode::Existing => {}
            OpenMode::Create => {
                options.create(true);
            }
            OpenMode::Truncate => {
                options.create(true).truncate(true);
            }
        }
        Ok(Arc::new(options.open(path)?))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(dir)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::File::open(dir)?.sync_all()
    }

    fn sync_all(&self, dir: &Path) -> io::Result<SyncAll> {
        let fd = std::fs::File::open(dir)?;
        Ok(SyncAll::new(move || {
            rustix::fs::syncfs(&fd)?;
            Ok(())
        }))
    }
}

impl StoredFile for std::fs::File {
    fn read_exact_at(&self, buf: &mut [u8], position: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, position)
    }

    fn write_all_at(&self, buf: &[u8], position: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(self, buf, position)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        std::fs::File::set_len(self, len)
    }

    fn sync_data(&self) -> io::Result<()> {
        std::fs::File::sync_data(self)
    }

    fn os_file(&self) -> Option<&std::fs::File> {
        Some(self)
    }

    fn identity(&self) -> Option<(u64, u64)> {
        use std::os::unix::fs::MetadataExt;
        let metadata = self.metadata().ok()?;
        Some((metadata.dev(), metadata.ino()))
    }
}

/// Replaces `path` with `bytes` so that a crash leaves the old file or the new one, never a torn
/// one, and the new one survives power loss: written to `<path>.tmp`, fsynced, renamed over
/// `path`, and the directory fsynced.
pub fn write_atomically(storage: &dyn Storage, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = Path::new(&tmp_name);
    let written = (|| {
        let file = storage.open(tmp, OpenMode::Truncate)?;
        file.write_all_at(bytes, 0)?;
        file.sync_data()
    })();
    if let Err(e) = written {
        // Out of space, say: leave no half-written file behind.
        let _ = storage.remove_file(tmp);
        return Err(e);
    }
    storage.rename(tmp, path)?;
    sync_parent(storage, path)
}

/// Removes `path` (if it exists) durably: its directory is fsynced after.
pub fn remove_durably(storage: &dyn Storage, path: &Path) -> io::Result<()> {
    match storage.remove_file(path) {
        Ok(()) => sync_parent(storage, path),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Fsyncs the directory holding `path`, so a name just made or removed there is durable.
pub fn sync_parent(storage: &dyn Storage, path: &Path) -> io::Result<()> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => storage.sync_dir(dir),
        None => Ok(()),
    }
}

/// Creates `dir` and its missing parents, each name made durable in its parent.
pub fn create_dir_durably(storage: &dyn Storage, dir: &Path) -> io::Result<()> {
    if storage.exists(dir) {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_durably(storage, parent)?;
    }
    storage.create_dir_all(dir)?;
    sync_parent(storage, dir)
}

/// The file as text, or `None` when it is missing or unreadable.
pub fn read_text(storage: &dyn Storage, path: &Path) -> io::Result<Option<String>> {
    match storage.read(path) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}
