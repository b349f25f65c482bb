//! A disk in memory that fails the way real ones do, for simulations and fuzzing.
//!
//! It keeps two states: what the programs see (the page cache) and what is on the platter. Data
//! reaches the platter at `sync_data`, a name (a new file, a rename, a removal, a new directory)
//! when its directory is synced; nothing else is promised, as POSIX promises nothing else. At a
//! power cut ([`SimDisk::power_loss`]) the seen state is thrown away and each file comes back as
//! the platter holds it, plus whatever part of the unsynced writes the chosen [`PowerLoss`] lets
//! through: none, an ordered prefix with the last write torn, or any subset in any order with
//! torn writes (pages written back out of order). Chosen operations can also fail with EIO or
//! ENOSPC ([`SimDisk::fail`]), and a capacity makes writes past it fail with ENOSPC.
//!
//! Handles opened before a power cut are dead after it: every call on them fails with EIO, as
//! the process that held them died.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::storage::{OpenMode, Storage, StoredFile};

/// What survives of unsynced writes at a power cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerLoss {
    /// Nothing unsynced survives: every file is what was last fsynced.
    DropUnsynced,
    /// A prefix of each file's unsynced writes survives, the last of them possibly torn; each
    /// unsynced name change survives or not.
    TornTail,
    /// Any subset of the unsynced writes survives, each possibly torn.
    Scrambled,
}

/// An operation [`SimDisk::fail`] can make fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsOp {
    Read,
    Write,
    SetLen,
    Sync,
    Open,
    Rename,
    Remove,
    SyncDir,
    CreateDir,
}

/// The error a failed operation returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// EIO: the device failed.
    Io,
    /// ENOSPC: the file system is full.
    NoSpace,
    /// EMFILE: the process is out of file descriptors.
    TooManyFiles,
}

impl Failure {
    fn error(self) -> io::Error {
        let errno = match self {
            Failure::Io => rustix::io::Errno::IO,
            Failure::NoSpace => rustix::io::Errno::NOSPC,
            Failure::TooManyFiles => rustix::io::Errno::MFILE,
        };
        io::Error::from_raw_os_error(errno.raw_os_error())
    }
}

/// Fails the next `times` operations `op` on paths containing `path_contains`.
#[derive(Debug, Clone)]
pub struct Fault {
    pub op: FsOp,
    pub path_contains: String,
    pub failure: Failure,
    pub times: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    Dir,
    File(u64),
}

#[derive(Debug, Clone)]
enum Op {
    Write { position: u64, bytes: Vec<u8> },
    SetLen(u64),
}

impl Op {
    fn apply(&self, data: &mut Vec<u8>) {
        match self {
            Op::Write { position, bytes } => write_into(data, *position, bytes),
            Op::SetLen(len) => data.resize(*len as usize, 0),
        }
    }
}

fn write_into(data: &mut Vec<u8>, position: u64, bytes: &[u8]) {
    let start = position as usize;
    let end = start + bytes.len();
    if data.len() < end {
        data.resize(end, 0);
    }
    data[start..end].copy_from_slice(bytes);
}

#[derive(Debug, Default)]
struct Inode {
    /// What programs read.
    data: Vec<u8>,
    /// What is on the platter.
    durable: Vec<u8>,
    /// Writes since the last sync, in order: `durable` with them applied is `data`.
    pending: Vec<Op>,
}

#[derive(Debug, Default)]
struct State {
    names: BTreeMap<PathBuf, Entry>,
    durable_names: BTreeMap<PathBuf, Entry>,
    inodes: HashMap<u64, Inode>,
    next_inode: u64,
    /// Bumped at each power cut: handles from before it are dead.
    boot: u64,
    faults: Vec<Fault>,
    /// Faults that let a number of matching operations through first: (fault, still to pass).
    later_faults: Vec<(Fault, u32)>,
    capacity: Option<u64>,
    rng: u64,
    /// Handles not yet dropped, and how many may be open at once (EMFILE beyond).
    open_files: usize,
    open_file_limit: Option<usize>,
}

impl State {
    fn check(&mut self, op: FsOp, path: &Path) -> io::Result<()> {
        let path = path.to_string_lossy();
        let matches = |f: &Fault| f.op == op && path.contains(&f.path_contains);
        if let Some(i) = self.later_faults.iter().position(|(f, _)| matches(f)) {
            match &mut self.later_faults[i] {
                (_, pass) if *pass > 0 => *pass -= 1,
                _ => {
                    let (fault, _) = self.later_faults.remove(i);
                    if fault.times > 1 {
                        self.faults.push(Fault {
                            times: fault.times - 1,
                            ..fault.clone()
                        });
                    }
                    return Err(fault.failure.error());
                }
            }
        }
        let hit = self
            .faults
            .iter_mut()
            .find(|f| f.op == op && f.times > 0 && path.contains(&f.path_contains));
        match hit {
            Some(fault) => {
                fault.times -= 1;
                let failure = fault.failure;
                self.faults.retain(|f| f.times > 0);
                Err(failure.error())
            }
            None => Ok(()),
        }
    }

    fn is_dir(&self, path: &Path) -> bool {
        is_root(path) || self.names.get(path) == Some(&Entry::Dir)
    }

    fn parent_exists(&self, path: &Path) -> io::Result<()> {
        match path.parent() {
            Some(parent) if !self.is_dir(parent) => Err(not_found(parent)),
            _ => Ok(()),
        }
    }

    fn used(&self) -> u64 {
        let live: BTreeSet<u64> = self
            .names
            .values()
            .filter_map(|e| match e {
                Entry::File(i) => Some(*i),
                Entry::Dir => None,
            })
            .collect();
        live.iter()
            .filter_map(|i| self.inodes.get(i))
            .map(|n| n.data.len() as u64)
            .sum()
    }

    fn next_random(&mut self) -> u64 {
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_random() % n
        }
    }
}

fn is_root(path: &Path) -> bool {
    path.parent().is_none() || path.as_os_str().is_empty()
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        ErrorKind::NotFound,
        format!("{}: no such file", path.display()),
    )
}

/// Files are held in memory, so none may grow past this (a real one would be sparse).
const MAX_FILE_BYTES: u64 = 1 << 32;

fn too_big() -> io::Error {
    io::Error::from_raw_os_error(rustix::io::Errno::FBIG.raw_os_error())
}

fn dead() -> io::Error {
    io::Error::from_raw_os_error(rustix::io::Errno::IO.raw_os_error())
}

/// A simulated disk. Clones share it.
#[derive(Debug, Clone, Default)]
pub struct SimDisk(Arc<Mutex<State>>);

impl SimDisk {
    /// An empty disk; `seed` drives what survives power cuts.
    pub fn new(seed: u64) -> SimDisk {
        let disk = SimDisk::default();
        disk.lock().rng = seed;
        disk
    }

    /// This disk as the storage of logs.
    pub fn storage(&self) -> Arc<dyn Storage> {
        Arc::new(self.clone())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the next matching operations fail.
    pub fn fail(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// Like [`SimDisk::fail`], after letting `pass` matching operations succeed.
    pub fn fail_after(&self, pass: u32, fault: Fault) {
        self.lock().later_faults.push((fault, pass));
    }

    /// Forgets every fault not yet triggered.
    pub fn clear_faults(&self) {
        self.lock().later_faults.clear();
        self.lock().faults.clear();
    }

    /// Writes that would make the files hold more than `bytes` fail with ENOSPC.
    pub fn set_capacity(&self, bytes: Option<u64>) {
        self.lock().capacity = bytes;
    }

    /// Opens beyond `limit` handles at once fail with EMFILE, as a process's descriptor limit does.
    pub fn set_open_file_limit(&self, limit: Option<usize>) {
        self.lock().open_file_limit = limit;
    }

    /// Handles opened and not yet dropped.
    pub fn open_files(&self) -> usize {
        self.lock().open_files
    }

    /// Bytes the files hold, as programs see them.
    pub fn used_bytes(&self) -> u64 {
        self.lock().used()
    }

    /// Bytes written past the last fsync, over every file.
    pub fn unsynced_bytes(&self) -> u64 {
        let state = self.lock();
        state
            .inodes
            .values()
            .flat_map(|n| &n.pending)
            .map(|op| match op {
                Op::Write { bytes, .. } => bytes.len() as u64,
                Op::SetLen(_) => 0,
            })
            .sum()
    }

    /// Cuts the power: open handles die, and the disk comes back as its platter holds it, with
    /// what `mode` lets through of the unsynced state.
    pub fn power_loss(&self, mode: PowerLoss) {
        let mut state = self.lock();
        let state = &mut *state;
        state.boot += 1;
        state.faults.clear();
        // Names: each one that differs from the platter keeps its new value or not.
        let paths: BTreeSet<PathBuf> = state
            .names
            .keys()
            .chain(state.durable_names.keys())
            .cloned()
            .collect();
        let mut names = BTreeMap::new();
        for path in paths {
            let now = state.names.get(&path).copied();
            let before = state.durable_names.get(&path).copied();
            let keep_new = now != before && mode != PowerLoss::DropUnsynced && state.below(2) == 0;
            if let Some(entry) = if keep_new { now } else { before } {
                names.insert(path, entry);
            }
        }
        // A name whose directory did not survive goes with it (parents sort first).
        let all: Vec<PathBuf> = names.keys().cloned().collect();
        for path in all {
            let orphan = path
                .parent()
                .is_some_and(|p| !is_root(p) && names.get(p) != Some(&Entry::Dir));
            if orphan {
                names.remove(&path);
            }
        }
        // Data: the platter, plus what survives of the unsynced writes.
        let live: BTreeSet<u64> = names
            .values()
            .filter_map(|e| match e {
                Entry::File(i) => Some(*i),
                Entry::Dir => None,
            })
            .collect();
        let mut inodes = HashMap::new();
        for id in live {
            let Some(inode) = state.inodes.remove(&id) else {
                continue;
            };
            let mut data = inode.durable;
            let n = inode.pending.len() as u64;
            match mode {
                PowerLoss::DropUnsynced => {}
                PowerLoss::TornTail => {
                    let whole = state.below(n + 1) as usize;
                    for op in &inode.pending[..whole] {
                        op.apply(&mut data);
                    }
                    if let Some(Op::Write { position, bytes }) = inode.pending.get(whole) {
                        let part = state.below(bytes.len() as u64) as usize;
                        write_into(&mut data, *position, &bytes[..part]);
                    }
                }
                PowerLoss::Scrambled => {
                    for op in &inode.pending {
                        match (state.below(3), op) {
                            (0, _) => {}
                            (1, Op::Write { position, bytes }) => {
                                let part = state.below(bytes.len() as u64 + 1) as usize;
                                write_into(&mut data, *position, &bytes[..part]);
                            }
                            (_, op) => op.apply(&mut data),
                        }
                    }
                }
            }
            inodes.insert(
                id,
                Inode {
                    durable: data.clone(),
                    data,
                    pending: Vec::new(),
                },
            );
        }
        state.durable_names = names.clone();
        state.names = names;
        state.inodes = inodes;
    }

    /// Every file and its contents as programs see them (for checks and test output).
    pub fn files(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let state = self.lock();
        state
            .names
            .iter()
            .filter_map(|(path, e)| match e {
                Entry::File(i) => Some((path.clone(), state.inodes.get(i)?.data.clone())),
                Entry::Dir => None,
            })
            .collect()
    }
}

impl Storage for SimDisk {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.check(FsOp::CreateDir, dir)?;
        for ancestor in dir.ancestors().filter(|a| !is_root(a)) {
            match state.names.get(ancestor) {
                Some(Entry::Dir) => break,
                Some(Entry::File(_)) => {
                    return Err(io::Error::new(
                        ErrorKind::AlreadyExists,
                        format!("{} is a file", ancestor.display()),
                    ))
                }
                None => {}
            }
        }
        let missing: Vec<PathBuf> = dir
            .ancestors()
            .filter(|a| !is_root(a) && !state.names.contains_key(*a))
            .map(Path::to_path_buf)
            .collect();
        for path in missing {
            state.names.insert(path, Entry::Dir);
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut state = self.lock();
        state.check(FsOp::Read, dir)?;
        if !state.is_dir(dir) {
            return Err(not_found(dir));
        }
        Ok(state
            .names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect())
    }

    fn exists(&self, path: &Path) -> bool {
        let state = self.lock();
        is_root(path) || state.names.contains_key(path)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StoredFile>> {
        let mut state = self.lock();
        state.check(FsOp::Open, path)?;
        if state.open_file_limit.is_some_and(|n| state.open_files >= n) {
            return Err(Failure::TooManyFiles.error());
        }
        let inode = match (state.names.get(path).copied(), mode) {
            (Some(Entry::Dir), _) => {
                return Err(io::Error::new(
                    ErrorKind::IsADirectory,
                    format!("{} is a directory", path.display()),
                ))
            }
            (Some(Entry::File(i)), OpenMode::Truncate) => {
                if let Some(inode) = state.inodes.get_mut(&i) {
                    inode.data.clear();
                    inode.pending.push(Op::SetLen(0));
                }
                i
            }
            (Some(Entry::File(i)), _) => i,
            (None, OpenMode::Existing) => return Err(not_found(path)),
            (None, _) => {
                state.parent_exists(path)?;
                let i = state.next_inode;
                state.next_inode += 1;
                state.inodes.insert(i, Inode::default());
                state.names.insert(path.to_path_buf(), Entry::File(i));
                i
            }
        };
        state.open_files += 1;
        Ok(Arc::new(SimFile {
            disk: self.clone(),
            path: path.to_path_buf(),
            inode,
            boot: state.boot,
        }))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut state = self.lock();
        state.check(FsOp::Read, path)?;
        match state.names.get(path) {
            Some(Entry::File(i)) => Ok(state
                .inodes
                .get(i)
                .map(|n| n.data.clone())
                .unwrap_or_default()),
            Some(Entry::Dir) => Err(io::Error::new(
                ErrorKind::IsADirectory,
                format!("{} is a directory", path.display()),
            )),
            None => Err(not_found(path)),
        }
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.check(FsOp::Remove, path)?;
        match state.names.get(path) {
            Some(Entry::File(_)) => {
                state.names.remove(path);
                Ok(())
            }
            Some(Entry::Dir) => Err(io::Error::new(
                ErrorKind::IsADirectory,
                format!("{} is a directory", path.display()),
            )),
            None => Err(not_found(path)),
        }
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.check(FsOp::Remove, dir)?;
        if !state.names.contains_key(dir) {
            return Err(not_found(dir));
        }
        state.names.retain(|p, _| !p.starts_with(dir));
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.check(FsOp::Rename, from)?;
        let Some(entry @ Entry::File(_)) = state.names.get(from).copied() else {
            return Err(not_found(from));
        };
        state.parent_exists(to)?;
        if state.names.get(to) == Some(&Entry::Dir) {
            return Err(io::Error::new(
                ErrorKind::IsADirectory,
                format!("{} is a directory", to.display()),
            ));
        }
        state.names.remove(from);
        state.names.insert(to.to_path_buf(), entry);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.check(FsOp::SyncDir, dir)?;
        if !state.is_dir(dir) {
            return Err(not_found(dir));
        }
        let state = &mut *state;
        state.durable_names.retain(|p, _| p.parent() != Some(dir));
        for (path, entry) in &state.names {
            if path.parent() == Some(dir) {
                state.durable_names.insert(path.clone(), *entry);
            }
        }
        Ok(())
    }

    fn sync_all(&self, dir: &Path) -> io::Result<crate::storage::SyncAll> {
        if !self.lock().is_dir(dir) {
            return Err(not_found(dir));
        }
        let (disk, dir) = (self.clone(), dir.to_path_buf());
        Ok(crate::storage::SyncAll::new(move || {
            let mut state = disk.lock();
            state.check(FsOp::SyncDir, &dir)?;
            // The whole disk, as syncfs syncs the whole file system.
            let state = &mut *state;
            state.durable_names = state.names.clone();
            for inode in state.inodes.values_mut() {
                for op in std::mem::take(&mut inode.pending) {
                    op.apply(&mut inode.durable);
                }
            }
            Ok(())
        }))
    }
}

/// An open file of a [`SimDisk`].
#[derive(Debug)]
struct SimFile {
    disk: SimDisk,
    path: PathBuf,
    inode: u64,
    boot: u64,
}

impl SimFile {
    /// The disk's state, once `op` passed the fault rules and the handle is alive.
    fn state(&self, op: FsOp) -> io::Result<MutexGuard<'_, State>> {
        let mut state = self.disk.lock();
        if state.boot != self.boot {
            return Err(dead());
        }
        state.check(op, &self.path)?;
        Ok(state)
    }
}

impl Drop for SimFile {
    fn drop(&mut self) {
        let mut state = self.disk.lock();
        state.open_files = state.open_files.saturating_sub(1);
    }
}

impl StoredFile for SimFile {
    fn read_exact_at(&self, buf: &mut [u8], position: u64) -> io::Result<()> {
        let state = self.state(FsOp::Read)?;
        let data = state
            .inodes
            .get(&self.inode)
            .map(|n| n.data.as_slice())
            .unwrap_or_default();
        let start = usize::try_from(position).unwrap_or(usize::MAX);
        let Some(bytes) = start
            .checked_add(buf.len())
            .and_then(|end| data.get(start..end))
        else {
            return Err(io::Error::new(
                ErrorKind::UnexpectedEof,
                "read past the end of the file",
            ));
        };
        buf.copy_from_slice(bytes);
        Ok(())
    }

    fn write_all_at(&self, buf: &[u8], position: u64) -> io::Result<()> {
        let mut state = self.state(FsOp::Write)?;
        let end = position.saturating_add(buf.len() as u64);
        if end > MAX_FILE_BYTES {
            return Err(too_big());
        }
        if let Some(capacity) = state.capacity {
            let len = state.inodes.get(&self.inode).map_or(0, |n| n.data.len()) as u64;
            let growth = end.saturating_sub(len);
            if state.used() + growth > capacity {
                return Err(Failure::NoSpace.error());
            }
        }
        let inode = state.inodes.entry(self.inode).or_default();
        write_into(&mut inode.data, position, buf);
        inode.pending.push(Op::Write {
            position,
            bytes: buf.to_vec(),
        });
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        let state = self.state(FsOp::Read)?;
        Ok(state.inodes.get(&self.inode).map_or(0, |n| n.data.len()) as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut state = self.state(FsOp::SetLen)?;
        if len > MAX_FILE_BYTES {
            return Err(too_big());
        }
        if let Some(capacity) = state.capacity {
            let now = state.inodes.get(&self.inode).map_or(0, |n| n.data.len()) as u64;
            if len > now && state.used() + (len - now) > capacity {
                return Err(Failure::NoSpace.error());
            }
        }
        let inode = state.inodes.entry(self.inode).or_default();
        inode.data.resize(len as usize, 0);
        inode.pending.push(Op::SetLen(len));
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut state = self.disk.lock();
        if state.boot != self.boot {
            return Err(dead());
        }
        if let Err(e) = state.check(FsOp::Sync, &self.path) {
            // As Linux does: the pages that failed are marked clean, so they stay readable but
            // never reach the disk, and the next fsync succeeds without them.
            if let Some(inode) = state.inodes.get_mut(&self.inode) {
                inode.pending.clear();
            }
            return Err(e);
        }
        let inode = state.inodes.entry(self.inode).or_default();
        for op in std::mem::take(&mut inode.pending) {
            op.apply(&mut inode.durable);
        }
        Ok(())
    }

    fn identity(&self) -> Option<(u64, u64)> {
        Some((0, self.inode))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{write_atomically, Storage};

    fn disk_with_file(seed: u64) -> (SimDisk, PathBuf) {
        let disk = SimDisk::new(seed);
        let dir = Path::new("/d");
        disk.create_dir_all(dir).unwrap();
        disk.sync_dir(Path::new("/")).unwrap();
        let path = dir.join("f");
        let f = disk.open(&path, OpenMode::Create).unwrap();
        f.write_all_at(b"synced", 0).unwrap();
        f.sync_data().unwrap();
        disk.sync_dir(dir).unwrap();
        f.write_all_at(b"-unsynced", 6).unwrap();
        (disk, path)
    }

    #[test]
    fn a_power_cut_drops_unsynced_writes_and_kills_handles() {
        let (disk, path) = disk_with_file(1);
        let before = disk.open(&path, OpenMode::Existing).unwrap();
        assert_eq!(disk.read(&path).unwrap(), b"synced-unsynced");
        assert_eq!(disk.unsynced_bytes(), 9);
        disk.power_loss(PowerLoss::DropUnsynced);
        assert_eq!(disk.read(&path).unwrap(), b"synced");
        let err = before.size().unwrap_err();
        assert_eq!(
            err.raw_os_error(),
            Some(rustix::io::Errno::IO.raw_os_error())
        );
    }

    #[test]
    fn a_torn_tail_keeps_a_prefix_of_the_unsynced_bytes() {
        let mut lengths = BTreeSet::new();
        for seed in 0..64 {
            let (disk, path) = disk_with_file(seed);
            disk.power_loss(PowerLoss::TornTail);
            let data = disk.read(&path).unwrap();
            assert!(b"synced-unsynced".starts_with(&data) && data.len() >= 6);
            lengths.insert(data.len());
        }
        assert!(lengths.len() > 3, "tears land at many places: {lengths:?}");
    }

    #[test]
    fn names_are_durable_only_once_their_directory_is_synced() {
        let disk = SimDisk::new(7);
        let dir = Path::new("/d");
        disk.create_dir_all(dir).unwrap();
        let f = disk.open(&dir.join("new"), OpenMode::Create).unwrap();
        f.write_all_at(b"x", 0).unwrap();
        f.sync_data().unwrap();
        disk.power_loss(PowerLoss::DropUnsynced);
        assert!(!disk.exists(dir), "the directory was never synced into /");

        disk.create_dir_all(dir).unwrap();
        disk.sync_dir(Path::new("/")).unwrap();
        write_atomically(&disk, &dir.join("ckpt"), b"one").unwrap();
        disk.open(&dir.join("ckpt.tmp"), OpenMode::Create)
            .unwrap()
            .write_all_at(b"half", 0)
            .unwrap();
        disk.power_loss(PowerLoss::DropUnsynced);
        assert_eq!(disk.read(&dir.join("ckpt")).unwrap(), b"one");
        assert!(!disk.exists(&dir.join("ckpt.tmp")));
    }

    #[test]
    fn faults_and_capacity_fail_chosen_operations() {
        let (disk, path) = disk_with_file(3);
        disk.fail(Fault {
            op: FsOp::Sync,
            path_contains: "/d/".into(),
            failure: Failure::Io,
            times: 1,
        });
        let f = disk.open(&path, OpenMode::Existing).unwrap();
        let err = f.sync_data().unwrap_err();
        assert_eq!(
            err.raw_os_error(),
            Some(rustix::io::Errno::IO.raw_os_error())
        );
        f.sync_data().unwrap();
        disk.set_capacity(Some(20));
        let err = f.write_all_at(&[0; 10], 15).unwrap_err();
        assert_eq!(
            err.raw_os_error(),
            Some(rustix::io::Errno::NOSPC.raw_os_error())
        );
        f.write_all_at(&[0; 5], 15).unwrap();
    }
}
