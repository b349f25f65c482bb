//! Open files as a cache with a cap, so a broker's descriptors do not grow with its partitions.
//!
//! [`FileCache`] wraps a [`Storage`]. Every file it opens is a [`CachedFile`]: a name and a slot
//! in one least-recently-used cache of open handles, shared by every log of the broker. An
//! operation on an evicted file opens it again by name. So a partition that nobody writes or
//! reads holds no descriptor, and the broker holds at most `cap` for its logs, however many
//! partitions it serves (Kafka keeps every segment open and asks for a huge `ulimit` instead).
//!
//! Invariants and the cases they cover:
//! - Dropping a [`CachedFile`] closes its handle at once, so a removed segment's space is freed.
//! - A reader that must see one file for a while (a fetch's sendfile, an fsync outside the log's
//!   lock) takes the open handle itself with [`StoredFile::pinned`]: a rename or removal of the
//!   name after that does not change what it reads.
//! - Running out of descriptors while reopening first gives back half of the cache's handles and
//!   tries once more; only then does the operation fail with EMFILE, which the log treats as a
//!   passing shortage (see [`crate::LogError::Shortage`]), never as a failed disk.
//! - Handles are opened and closed outside the cache's lock; the lock guards only the map.
//!
//! - While anyone still holds a file's last handle (a pin, a fetch's file slice), an operation
//!   on it takes that handle back instead of opening the file again: an operation that pinned
//!   its files first never reopens one halfway through, so it cannot run out of descriptors
//!   there.
//! - A file opened again by name must be the file first opened (same device and inode). If the
//!   name now holds another (compaction renamed a new segment over it, a topic was deleted and
//!   made again), the operation fails with ESTALE, an I/O error, instead of reading or writing
//!   another file's bytes.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::{fmt, io};

use lru::LruCache;

use crate::out_of_descriptors;
use crate::storage::{OpenMode, Storage, StoredFile};

/// A [`Storage`] whose open files share one capped cache of handles.
#[derive(Debug, Clone)]
pub struct FileCache {
    inner: Arc<dyn Storage>,
    handles: Arc<Handles>,
}

impl FileCache {
    /// Wraps `inner`, keeping at most `cap` (at least 1) handles open.
    pub fn new(inner: Arc<dyn Storage>, cap: usize) -> FileCache {
        let cap = NonZeroUsize::new(cap).unwrap_or(NonZeroUsize::MIN);
        FileCache {
            inner,
            handles: Arc::new(Handles {
                next_id: AtomicU64::new(0),
                reopened: AtomicU64::new(0),
                open: Mutex::new(LruCache::new(cap)),
            }),
        }
    }

    /// Handles open in the cache now (not counting those pinned by readers).
    pub fn open_handles(&self) -> usize {
        self.handles.lock().len()
    }

    /// Files opened again after their handle was evicted, since the start.
    pub fn reopened(&self) -> u64 {
        self.handles.reopened.load(Ordering::Relaxed)
    }
}

struct Handles {
    next_id: AtomicU64,
    reopened: AtomicU64,
    open: Mutex<LruCache<u64, Arc<dyn StoredFile>>>,
}

impl fmt::Debug for Handles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (open, cap) = {
            let open = self.lock();
            (open.len(), open.cap())
        };
        f.debug_struct("Handles")
            .field("open", &open)
            .field("cap", &cap)
            .finish()
    }
}

impl Handles {
    fn lock(&self) -> MutexGuard<'_, LruCache<u64, Arc<dyn StoredFile>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, id: u64) -> Option<Arc<dyn StoredFile>> {
        self.lock().get(&id).cloned()
    }

    /// Caches `handle` for `id` and returns the handle to use (another thread's, if it was
    /// quicker). An evicted handle is closed after the lock is released.
    fn put(&self, id: u64, handle: Arc<dyn StoredFile>) -> Arc<dyn StoredFile> {
        let mut open = self.lock();
        if let Some(existing) = open.get(&id) {
            return existing.clone();
        }
        let evicted = open.push(id, handle.clone());
        drop(open);
        drop(evicted);
        handle
    }

    fn forget(&self, id: u64) {
        let removed = self.lock().pop(&id);
        drop(removed);
    }

    /// Closes the least recently used half of the cached handles (at least one). Returns whether
    /// any was closed.
    fn shed(&self) -> bool {
        let mut open = self.lock();
        let n = open.len().div_ceil(2);
        let shed: Vec<_> = (0..n).filter_map(|_| open.pop_lru()).collect();
        drop(open);
        !shed.is_empty()
    }
}

impl FileCache {
    /// Runs `op` on the inner storage; out of descriptors, sheds half the cache and runs it again.
    fn shedding<T>(&self, op: impl Fn(&dyn Storage) -> io::Result<T>) -> io::Result<T> {
        match op(&*self.inner) {
            Err(e) if out_of_descriptors(&e) && self.handles.shed() => op(&*self.inner),
            other => other,
        }
    }

    fn open_inner(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StoredFile>> {
        self.shedding(|fs| fs.open(path, mode))
    }
}

impl Storage for FileCache {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.list(dir)
    }

    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StoredFile>> {
        // Opened now, in the mode asked for (so a missing file or a truncation happens here);
        // later reopenings find it by name.
        let handle = self.open_inner(path, mode)?;
        let id = self.handles.next_id.fetch_add(1, Ordering::Relaxed);
        let file = CachedFile {
            id,
            path: path.to_path_buf(),
            identity: handle.identity(),
            last: Mutex::new(Arc::downgrade(&handle)),
            cache: self.clone(),
        };
        self.handles.put(id, handle);
        Ok(Arc::new(file))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.shedding(|fs| fs.read(path))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.remove_dir_all(dir)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.shedding(|fs| fs.sync_dir(dir))
    }

    fn sync_all(&self, dir: &Path) -> io::Result<crate::storage::SyncAll> {
        self.shedding(|fs| fs.sync_all(dir))
    }
}

/// A file of a [`FileCache`]: its name, and its handle while the cache keeps it open.
pub struct CachedFile {
    id: u64,
    path: PathBuf,
    /// What was opened first: a reopening that finds another file under the name fails.
    identity: Option<(u64, u64)>,
    /// The last handle, while anyone (a pin, a fetch's file slice) still holds it: taken back
    /// instead of opening the file again.
    last: Mutex<Weak<dyn StoredFile>>,
    cache: FileCache,
}

impl fmt::Debug for CachedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedFile")
            .field("path", &self.path)
            .finish()
    }
}

impl CachedFile {
    /// The open handle: the cached one, one still held elsewhere, or the file opened again.
    fn handle(&self) -> io::Result<Arc<dyn StoredFile>> {
        if let Some(handle) = self.cache.handles.get(self.id) {
            return Ok(handle);
        }
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(handle) = last.upgrade() {
            drop(last);
            return Ok(self.cache.handles.put(self.id, handle));
        }
        let handle = self.cache.open_inner(&self.path, OpenMode::Existing)?;
        if self.identity.is_some() && handle.identity() != self.identity {
            // The name now holds another file (a compaction's rename, a re-created topic):
            // this one is gone, and so is everything the caller believed about it.
            return Err(io::Error::from_raw_os_error(
                rustix::io::Errno::STALE.raw_os_error(),
            ));
        }
        *last = Arc::downgrade(&handle);
        drop(last);
        self.cache.handles.reopened.fetch_add(1, Ordering::Relaxed);
        Ok(self.cache.handles.put(self.id, handle))
    }
}

impl Drop for CachedFile {
    fn drop(&mut self) {
        self.cache.handles.forget(self.id);
    }
}

impl StoredFile for CachedFile {
    fn read_exact_at(&self, buf: &mut [u8], position: u64) -> io::Result<()> {
        self.handle()?.read_exact_at(buf, position)
    }

    fn write_all_at(&self, buf: &[u8], position: u64) -> io::Result<()> {
        self.handle()?.write_all_at(buf, position)
    }

    fn size(&self) -> io::Result<u64> {
        self.handle()?.size()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.handle()?.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        // Data written through a handle since closed is in the inode's pages: an fsync through
        // a new handle flushes it (and Linux reports a writeback error to the first handle that
        // asks after it happened).
        self.handle()?.sync_data()
    }

    fn pinned(&self) -> io::Result<Option<Arc<dyn StoredFile>>> {
        crate::storage::pin(&self.handle()?).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simfs::{Failure, Fault, FsOp, SimDisk};

    fn cache(cap: usize) -> (SimDisk, FileCache) {
        let disk = SimDisk::new(7);
        let storage: Arc<dyn Storage> = Arc::new(disk.clone());
        (disk, FileCache::new(storage, cap))
    }

    #[test]
    fn many_files_share_a_few_handles_and_keep_their_data() {
        let (disk, cache) = cache(3);
        cache.create_dir_all(Path::new("/d")).unwrap();
        let files: Vec<_> = (0..20)
            .map(|i| {
                let f = cache
                    .open(Path::new(&format!("/d/{i}")), OpenMode::Create)
                    .unwrap();
                f.write_all_at(format!("file {i}").as_bytes(), 0).unwrap();
                f
            })
            .collect();
        assert!(cache.open_handles() <= 3);
        assert!(disk.open_files() <= 3, "{} open", disk.open_files());
        for (i, f) in files.iter().enumerate() {
            let want = format!("file {i}");
            let mut buf = vec![0; want.len()];
            f.read_exact_at(&mut buf, 0).unwrap();
            assert_eq!(buf, want.as_bytes());
            f.write_all_at(b"!", want.len() as u64).unwrap();
            f.sync_data().unwrap();
            assert_eq!(f.size().unwrap(), want.len() as u64 + 1);
        }
        assert!(cache.reopened() >= 17);
        assert!(disk.open_files() <= 3);
        drop(files);
        assert_eq!(cache.open_handles(), 0);
        assert_eq!(disk.open_files(), 0);
    }

    #[test]
    fn a_pinned_handle_outlives_eviction_rename_and_removal() {
        let (disk, cache) = cache(1);
        cache.create_dir_all(Path::new("/d")).unwrap();
        let a = cache.open(Path::new("/d/a"), OpenMode::Create).unwrap();
        a.write_all_at(b"old", 0).unwrap();
        let pinned = a.pinned().unwrap().expect("a cached file pins its handle");
        let _b = cache.open(Path::new("/d/b"), OpenMode::Create).unwrap();
        let replacement = cache.open(Path::new("/d/a.new"), OpenMode::Create).unwrap();
        replacement.write_all_at(b"new", 0).unwrap();
        cache
            .rename(Path::new("/d/a.new"), Path::new("/d/a"))
            .unwrap();
        let mut buf = [0u8; 3];
        pinned.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"old");
        drop(pinned);
        assert_eq!(disk.open_files(), 1, "only the cached handle is left");
    }

    #[test]
    fn a_file_replaced_under_its_name_is_never_reopened_as_the_new_one() {
        let (_disk, cache) = cache(1);
        cache.create_dir_all(Path::new("/d")).unwrap();
        let old = cache.open(Path::new("/d/seg"), OpenMode::Create).unwrap();
        old.write_all_at(b"old", 0).unwrap();
        let new = cache
            .open(Path::new("/d/seg.new"), OpenMode::Create)
            .unwrap();
        new.write_all_at(b"new!", 0).unwrap();
        cache
            .rename(Path::new("/d/seg.new"), Path::new("/d/seg"))
            .unwrap();
        // `old`'s handle was evicted by `new`: reopening by name finds another file.
        let err = old.size().unwrap_err();
        assert_eq!(
            err.raw_os_error(),
            Some(rustix::io::Errno::STALE.raw_os_error())
        );
        assert_eq!(new.size().unwrap(), 4);
    }

    #[test]
    fn a_held_handle_is_taken_back_instead_of_reopening() {
        let (disk, cache) = cache(1);
        cache.create_dir_all(Path::new("/d")).unwrap();
        let a = cache.open(Path::new("/d/a"), OpenMode::Create).unwrap();
        let pin = crate::storage::pin(&a).unwrap();
        let _b = cache.open(Path::new("/d/b"), OpenMode::Create).unwrap();
        disk.set_open_file_limit(Some(disk.open_files()));
        // At the limit, and `a` was evicted: its pinned handle serves it.
        a.write_all_at(b"x", 0).unwrap();
        assert_eq!(cache.reopened(), 0);
        drop(pin);
    }

    #[test]
    fn running_out_of_descriptors_sheds_the_cache_first() {
        let (disk, cache) = cache(8);
        cache.create_dir_all(Path::new("/d")).unwrap();
        disk.set_open_file_limit(Some(8));
        let files: Vec<_> = (0..8)
            .map(|i| {
                cache
                    .open(Path::new(&format!("/d/{i}")), OpenMode::Create)
                    .unwrap()
            })
            .collect();
        // The process is at its limit: something else took the descriptors the cache gave up.
        let ninth = cache.open(Path::new("/d/8"), OpenMode::Create).unwrap();
        ninth.write_all_at(b"x", 0).unwrap();
        assert!(cache.open_handles() <= 5);
        // With nothing to shed, the error is EMFILE, which the log counts as a shortage.
        disk.fail(Fault {
            op: FsOp::Open,
            path_contains: "/d/".into(),
            failure: Failure::TooManyFiles,
            times: 2,
        });
        let err = cache.open(Path::new("/d/9"), OpenMode::Create).unwrap_err();
        assert!(matches!(
            crate::LogError::from_io(err),
            crate::LogError::Shortage(_)
        ));
        drop(files);
    }
}
