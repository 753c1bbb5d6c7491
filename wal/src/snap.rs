//! A directory of snapshot files, `<term:016x>-<index:016x>.snap`.
//!
//! # File format
//!
//! | offset | size | field                                                  |
//! |--------|------|--------------------------------------------------------|
//! | 0      | 8    | magic `"KVSNAP01"`                                     |
//! | 8      | 8    | payload length, u64 LE                                 |
//! | 16     | 4    | CRC-32 (IEEE) of the payload, u32 LE                   |
//! | 20     | 4    | zero                                                   |
//! | 24     | ...  | payload, postcard: `index: u64, term: u64, conf_state, data: bytes` (as in [`crate::record`]) |
//!
//! A snapshot is written to `<name>.tmp`, synced, renamed to its name, and
//! the directory is synced: a crash leaves either no file or a whole one
//! (plus perhaps a `.tmp`, removed when the store is opened).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use raft_core::{EntryId, Snapshot};
use serde::{Deserialize, Serialize};

use crate::record::{RawBytes, SnapshotMetaWire};
use crate::{Result, WalError};

const MAGIC: [u8; 8] = *b"KVSNAP01";
const HEADER: usize = 24;

#[derive(Serialize, Deserialize)]
struct SnapWire<'a> {
    meta: SnapshotMetaWire,
    #[serde(borrow)]
    data: RawBytes<'a>,
}

/// A snapshot loaded by [`SnapStore::load_newest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedSnapshot {
    /// The snapshot.
    pub snapshot: Snapshot,
    /// Its file.
    pub path: PathBuf,
    /// Newer files that were skipped because they are damaged, and why.
    pub skipped: Vec<(PathBuf, String)>,
}

/// A directory of snapshot files.
///
/// ```
/// use raft_core::{ConfState, EntryId, Snapshot, SnapshotMetadata};
/// use wal::SnapStore;
///
/// # fn main() -> Result<(), wal::WalError> {
/// # let tmp = tempfile::tempdir().unwrap();
/// let store = SnapStore::open(tmp.path().join("snap"))?;
/// let snap = Snapshot {
///     data: "state".into(),
///     metadata: SnapshotMetadata { index: 10, term: 2, conf_state: ConfState::with_voters([1]) },
/// };
/// store.save(&snap)?;
/// assert_eq!(store.load(EntryId::new(2, 10))?, snap);
/// assert_eq!(store.load_newest()?.unwrap().snapshot, snap);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct SnapStore {
    dir: PathBuf,
    keep: usize,
}

fn snap_name(id: EntryId) -> String {
    format!("{:016x}-{:016x}.snap", id.term, id.index)
}

fn parse_snap_name(name: &str) -> Option<EntryId> {
    let stem = name.strip_suffix(".snap")?;
    let (term, index) = stem.split_once('-')?;
    if term.len() != 16 || index.len() != 16 {
        return None;
    }
    Some(EntryId::new(
        u64::from_str_radix(term, 16).ok()?,
        u64::from_str_radix(index, 16).ok()?,
    ))
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    File::open(path)?.sync_all()
}

impl SnapStore {
    /// Opens (creating it if needed) a snapshot directory that keeps the 3
    /// newest snapshots, removing leftover temporary files.
    ///
    /// # Errors
    /// Any failure to create or read the directory.
    pub fn open(path: impl AsRef<Path>) -> Result<SnapStore> {
        SnapStore::with_keep(path, 3)
    }

    /// Like [`SnapStore::open`], keeping the `keep` newest snapshots (at
    /// least 1).
    ///
    /// # Errors
    /// As [`SnapStore::open`].
    pub fn with_keep(path: impl AsRef<Path>, keep: usize) -> Result<SnapStore> {
        let dir = path.as_ref().to_path_buf();
        if !dir.is_dir() {
            fs::create_dir_all(&dir)?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        let mut removed = false;
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().ends_with(".tmp") {
                fs::remove_file(entry.path())?;
                removed = true;
            }
        }
        if removed {
            sync_dir(&dir)?;
        }
        Ok(SnapStore {
            dir,
            keep: keep.max(1),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The ids of the snapshot files present, oldest (lowest index, then
    /// term) first. Damaged files are listed too.
    ///
    /// # Errors
    /// Any failure to read the directory.
    pub fn list(&self) -> Result<Vec<EntryId>> {
        let mut ids = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            if let Some(id) = parse_snap_name(&entry?.file_name().to_string_lossy()) {
                ids.push(id);
            }
        }
        ids.sort_by_key(|id| (id.index, id.term));
        Ok(ids)
    }

    /// Writes a snapshot durably (temporary file, sync, rename, directory
    /// sync), then removes all but the newest few. Returns its path.
    ///
    /// # Errors
    /// Any I/O failure; a failed save leaves at most a `.tmp` file.
    pub fn save(&self, snap: &Snapshot) -> Result<PathBuf> {
        let wire = SnapWire {
            meta: (&snap.metadata).into(),
            data: RawBytes(&snap.data),
        };
        let payload = postcard::to_stdvec(&wire).expect("postcard into a Vec cannot fail");
        let mut header = [0u8; HEADER];
        header[..8].copy_from_slice(&MAGIC);
        header[8..16].copy_from_slice(&(payload.len() as u64).to_le_bytes());
        header[16..20].copy_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        let name = snap_name(snap.id());
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        file.write_all(&header)?;
        file.write_all(&payload)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, &path)?;
        sync_dir(&self.dir)?;
        self.prune(self.keep)?;
        Ok(path)
    }

    /// Loads the snapshot `id`.
    ///
    /// # Errors
    /// [`WalError::NoSnapshot`] if there is no such file,
    /// [`WalError::Corrupt`] if it is damaged, [`WalError::Io`].
    pub fn load(&self, id: EntryId) -> Result<Snapshot> {
        let path = self.dir.join(snap_name(id));
        let buf = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(WalError::NoSnapshot {
                    term: id.term,
                    index: id.index,
                });
            }
            Err(e) => return Err(e.into()),
        };
        decode(Bytes::from(buf), id).map_err(|(offset, reason)| WalError::Corrupt {
            segment: path.display().to_string(),
            offset,
            reason,
        })
    }

    /// Loads the newest snapshot that is not damaged, if any, reporting the
    /// newer ones it skipped.
    ///
    /// # Errors
    /// [`WalError::Io`] for failures other than damage.
    pub fn load_newest(&self) -> Result<Option<LoadedSnapshot>> {
        let mut skipped = Vec::new();
        for id in self.list()?.into_iter().rev() {
            let path = self.dir.join(snap_name(id));
            match self.load(id) {
                Ok(snapshot) => {
                    return Ok(Some(LoadedSnapshot {
                        snapshot,
                        path,
                        skipped,
                    }));
                }
                Err(WalError::Corrupt { reason, .. }) => skipped.push((path, reason)),
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Removes all but the `keep` newest snapshot files. Returns how many
    /// were removed.
    ///
    /// # Errors
    /// Any I/O failure.
    pub fn prune(&self, keep: usize) -> Result<usize> {
        let ids = self.list()?;
        let excess = ids.len().saturating_sub(keep.max(1));
        for id in &ids[..excess] {
            fs::remove_file(self.dir.join(snap_name(*id)))?;
        }
        if excess > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(excess)
    }
}

fn decode(buf: Bytes, id: EntryId) -> std::result::Result<Snapshot, (u64, String)> {
    if buf.len() < HEADER || buf[..8] != MAGIC {
        return Err((0, "bad magic".into()));
    }
    let len = u64::from_le_bytes(buf[8..16].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(buf[16..20].try_into().expect("4 bytes"));
    if len != (buf.len() - HEADER) as u64 {
        return Err((
            8,
            format!("payload length {len}, file holds {}", buf.len() - HEADER),
        ));
    }
    let payload = buf.slice(HEADER..);
    if crc32fast::hash(&payload) != crc {
        return Err((HEADER as u64, "crc mismatch".into()));
    }
    let wire: SnapWire<'_> = postcard::from_bytes(&payload)
        .map_err(|e| (HEADER as u64, format!("undecodable payload: {e}")))?;
    if (wire.meta.term, wire.meta.index) != (id.term, id.index) {
        return Err((
            HEADER as u64,
            format!(
                "holds term {} index {}, the name says term {} index {}",
                wire.meta.term, wire.meta.index, id.term, id.index
            ),
        ));
    }
    let data = payload.slice_ref(wire.data.0);
    Ok(Snapshot {
        data,
        metadata: wire.meta.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_core::{ConfState, SnapshotMetadata};

    fn snap(term: u64, index: u64, len: usize) -> Snapshot {
        Snapshot {
            data: Bytes::from(
                (0..len)
                    .map(|i| (i * 31 + index as usize) as u8)
                    .collect::<Vec<_>>(),
            ),
            metadata: SnapshotMetadata {
                index,
                term,
                conf_state: ConfState {
                    voters: vec![1, 2, 3],
                    learners: vec![4],
                    ..Default::default()
                },
            },
        }
    }

    #[test]
    fn save_load_and_prune() {
        let tmp = tempfile::tempdir().unwrap();
        let store = SnapStore::with_keep(tmp.path().join("snap"), 2).unwrap();
        assert!(store.load_newest().unwrap().is_none());
        for (t, i) in [(1, 10), (1, 20), (2, 30), (3, 25)] {
            store.save(&snap(t, i, 5000)).unwrap();
        }
        // Newest by index: 30 then 25; 10 and 20 pruned.
        assert_eq!(
            store.list().unwrap(),
            vec![EntryId::new(3, 25), EntryId::new(2, 30)]
        );
        let loaded = store.load_newest().unwrap().unwrap();
        assert_eq!(loaded.snapshot, snap(2, 30, 5000));
        assert!(loaded.skipped.is_empty());
        assert!(matches!(
            store.load(EntryId::new(1, 10)),
            Err(WalError::NoSnapshot { term: 1, index: 10 })
        ));
    }

    #[test]
    fn damaged_newest_is_skipped_and_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let store = SnapStore::open(tmp.path()).unwrap();
        store.save(&snap(1, 10, 100)).unwrap();
        let newest = store.save(&snap(1, 20, 100)).unwrap();
        let mut bytes = fs::read(&newest).unwrap();
        let n = bytes.len();
        bytes[n - 3] ^= 0x10;
        fs::write(&newest, &bytes).unwrap();
        assert!(matches!(
            store.load(EntryId::new(1, 20)),
            Err(WalError::Corrupt { .. })
        ));
        let loaded = store.load_newest().unwrap().unwrap();
        assert_eq!(loaded.snapshot.metadata.index, 10);
        assert_eq!(loaded.skipped.len(), 1);
        assert_eq!(loaded.skipped[0].0, newest);
        // Truncated file and a file whose name lies about its content.
        fs::write(&newest, &bytes[..n - 1]).unwrap();
        assert!(matches!(
            store.load(EntryId::new(1, 20)),
            Err(WalError::Corrupt { .. })
        ));
        fs::copy(tmp.path().join(snap_name(EntryId::new(1, 10))), &newest).unwrap();
        assert!(matches!(
            store.load(EntryId::new(1, 20)),
            Err(WalError::Corrupt { .. })
        ));
    }

    #[test]
    fn leftover_temp_files_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(
            tmp.path()
                .join("0000000000000001-0000000000000002.snap.tmp"),
            b"partial",
        )
        .unwrap();
        let store = SnapStore::open(tmp.path()).unwrap();
        assert!(store.list().unwrap().is_empty());
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
    }
}
