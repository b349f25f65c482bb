//! Files that are replaced whole (checkpoints, markers): written to a temporary name, fsynced,
//! renamed over the old one, and the directory fsynced, so a crash leaves either the old file or
//! the new one, never a torn one, and the rename itself survives power loss.

//!
//! These work on the real file system; [`crate::storage`] has the same for any storage.

use std::path::Path;

use crate::storage::{self, Disk};

/// Replaces `path` with `bytes` atomically and durably.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    storage::write_atomically(&Disk, path, bytes)
}

/// Removes `path` (if it exists) durably: the directory is fsynced after.
pub fn remove_durably(path: &Path) -> std::io::Result<()> {
    storage::remove_durably(&Disk, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_files_and_removes_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("marker");
        write_atomically(&path, b"one").unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert!(!dir.path().join("marker.tmp").exists());
        remove_durably(&path).unwrap();
        remove_durably(&path).unwrap();
        assert!(!path.exists());
    }
}
