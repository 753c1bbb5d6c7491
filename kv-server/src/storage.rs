//! The node's durable storage: the WAL (`<data-dir>/wal/`) and the snapshot
//! files (`<data-dir>/snap/`), and what the node recovers from them.
//!
//! raft reads its log from a `MemStorage` that the node fills from what is
//! recovered here and then from every Ready it persists (like etcd's
//! MemoryStorage fed from its WAL): the WAL is written, never read, while the
//! node runs.

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use raft_core::{ConfState, Entry, EntryId, HardState, NodeId, Snapshot, SnapshotMetadata};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};
use wal::{Options, SnapStore, Wal, WalStats};

/// Snapshot files kept besides the newest.
const KEEP_SNAPSHOTS: usize = 3;

/// The application state in a snapshot: the members' peer URLs and the
/// key-value data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSnapshot {
    /// Node id -> peer URL of every member.
    pub members: BTreeMap<NodeId, String>,
    /// The state machine's own snapshot bytes.
    pub kv: Bytes,
}

/// The version byte in front of an encoded [`NodeSnapshot`].
const SNAPSHOT_VERSION: u8 = 1;

impl NodeSnapshot {
    /// Encodes the snapshot (version byte + postcard).
    pub fn encode(&self) -> Bytes {
        let mut out = vec![SNAPSHOT_VERSION];
        out.extend(postcard::to_allocvec(self).expect("a NodeSnapshot always encodes"));
        out.into()
    }

    /// Decodes a snapshot.
    ///
    /// # Errors
    /// An unknown version or malformed data.
    pub fn decode(data: &[u8]) -> anyhow::Result<NodeSnapshot> {
        match data.split_first() {
            Some((&SNAPSHOT_VERSION, rest)) => Ok(postcard::from_bytes(rest)?),
            Some((v, _)) => anyhow::bail!("unknown snapshot version {v}"),
            None => anyhow::bail!("empty snapshot"),
        }
    }
}

/// What the node restarts from.
#[derive(Debug, Default)]
pub struct RecoveredState {
    /// The newest snapshot the WAL refers to.
    pub snapshot: Option<Snapshot>,
    /// The entries after it.
    pub entries: Vec<Entry>,
    /// The last hard state, if any was saved.
    pub hard_state: Option<HardState>,
}

/// The WAL and the snapshot files.
pub struct DiskStorage {
    wal: Wal,
    snaps: SnapStore,
}

impl DiskStorage {
    /// Opens (or creates) the data directory and recovers its state. A fresh
    /// directory is bootstrapped from `bootstrap` when given: a snapshot at
    /// index 1, term 1 holding the initial members as `voters`. A node that
    /// joins an existing cluster passes None and starts empty; the leader
    /// then sends it a snapshot.
    ///
    /// # Errors
    /// I/O failures and corruption (named by file and offset).
    pub fn open(
        dir: &Path,
        bootstrap: Option<NodeSnapshot>,
        voters: Vec<NodeId>,
    ) -> anyhow::Result<(DiskStorage, RecoveredState)> {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("creating data directory {}: {e}", dir.display()))?;
        let (wal, rec) = Wal::open(dir.join("wal"), Options::default())?;
        if let Some(torn) = &rec.report.torn_tail {
            warn!(segment = %torn.segment, offset = torn.offset, reason = %torn.reason,
                "cut a torn tail off the WAL (a write interrupted by a crash)");
        }
        let snaps = SnapStore::with_keep(dir.join("snap"), KEEP_SNAPSHOTS)?;
        let fresh = rec.snapshot.index == 0 && rec.entries.is_empty() && rec.hard_state.is_empty();
        if fresh {
            let mut disk = DiskStorage { wal, snaps };
            let Some(state) = bootstrap else {
                info!("empty data directory: waiting to join the cluster");
                return Ok((disk, RecoveredState::default()));
            };
            let snap = Snapshot {
                data: state.encode(),
                metadata: SnapshotMetadata {
                    conf_state: ConfState::with_voters(voters),
                    index: 1,
                    term: 1,
                },
            };
            let hs = HardState {
                term: 1,
                vote: 0,
                commit: 1,
            };
            disk.save_snapshot(&snap)?;
            disk.save_hard_state(&hs)?;
            disk.sync()?;
            info!("bootstrapped a new cluster");
            return Ok((
                disk,
                RecoveredState {
                    snapshot: Some(snap),
                    entries: Vec::new(),
                    hard_state: Some(hs),
                },
            ));
        }
        let snapshot = if rec.snapshot.index > 0 {
            let id = EntryId::new(rec.snapshot.term, rec.snapshot.index);
            Some(snaps.load(id)?)
        } else {
            None
        };
        info!(
            snapshot_index = rec.snapshot.index,
            entries = rec.entries.len(),
            segments = rec.report.segments,
            "recovered from the WAL"
        );
        let hard_state = (!rec.hard_state.is_empty()).then_some(rec.hard_state);
        Ok((
            DiskStorage { wal, snaps },
            RecoveredState {
                snapshot,
                entries: rec.entries,
                hard_state,
            },
        ))
    }

    /// Appends entries (replacing any suffix they overlap). Durable after
    /// [`DiskStorage::sync`].
    ///
    /// # Errors
    /// I/O failures.
    pub fn append(&mut self, entries: &[Entry]) -> anyhow::Result<()> {
        Ok(self.wal.append(entries)?)
    }

    /// Saves the hard state. Durable after [`DiskStorage::sync`].
    ///
    /// # Errors
    /// I/O failures.
    pub fn save_hard_state(&mut self, hs: &HardState) -> anyhow::Result<()> {
        Ok(self.wal.save_hard_state(hs)?)
    }

    /// Writes a snapshot file (durably), then its marker in the WAL (durable
    /// after [`DiskStorage::sync`]), and prunes old snapshot files.
    ///
    /// # Errors
    /// I/O failures.
    pub fn save_snapshot(&mut self, snap: &Snapshot) -> anyhow::Result<()> {
        self.snaps.save(snap)?;
        self.wal.save_snapshot(&snap.metadata)?;
        Ok(())
    }

    /// Makes everything written so far durable (one flush: group commit).
    ///
    /// # Errors
    /// I/O failures; the WAL refuses further writes after one.
    pub fn sync(&mut self) -> anyhow::Result<()> {
        Ok(self.wal.sync()?)
    }

    /// Syncs, then drops WAL segments covered by the snapshot at `index` and
    /// old snapshot files.
    ///
    /// # Errors
    /// I/O failures.
    pub fn release_to(&mut self, index: u64) -> anyhow::Result<()> {
        self.wal.sync()?;
        self.wal.release_to(index)?;
        self.snaps.prune(KEEP_SNAPSHOTS)?;
        Ok(())
    }

    /// WAL statistics.
    pub fn stats(&self) -> WalStats {
        self.wal.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> NodeSnapshot {
        NodeSnapshot {
            members: BTreeMap::from([(1, "http://127.0.0.1:1".to_string())]),
            kv: Bytes::from_static(b"kv"),
        }
    }

    #[test]
    fn node_snapshot_round_trips_and_rejects_garbage() {
        let s = state();
        assert_eq!(NodeSnapshot::decode(&s.encode()).unwrap(), s);
        assert!(NodeSnapshot::decode(&[]).is_err());
        assert!(NodeSnapshot::decode(&[9, 1, 2]).is_err());
        assert!(NodeSnapshot::decode(&[SNAPSHOT_VERSION, 0xff, 0xff]).is_err());
    }

    #[test]
    fn bootstrap_then_restart_recovers_the_same_state() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut disk, rec) = DiskStorage::open(tmp.path(), Some(state()), vec![1, 2, 3]).unwrap();
        let snap = rec.snapshot.unwrap();
        assert_eq!(snap.metadata.index, 1);
        assert_eq!(snap.metadata.conf_state.voters, vec![1, 2, 3]);
        let ents: Vec<Entry> = (2..=5).map(|i| Entry::new(1, i, vec![i as u8])).collect();
        disk.append(&ents).unwrap();
        let hs = HardState {
            term: 1,
            vote: 1,
            commit: 5,
        };
        disk.save_hard_state(&hs).unwrap();
        disk.sync().unwrap();
        drop(disk);
        // Bootstrap data is ignored on restart: the directory is not fresh.
        let (_disk, rec) = DiskStorage::open(tmp.path(), None, vec![]).unwrap();
        assert_eq!(rec.snapshot.unwrap(), snap);
        assert_eq!(rec.entries, ents);
        assert_eq!(rec.hard_state, Some(hs));
    }

    #[test]
    fn a_joining_node_starts_empty() {
        let tmp = tempfile::tempdir().unwrap();
        let (_disk, rec) = DiskStorage::open(tmp.path(), None, vec![]).unwrap();
        assert!(rec.snapshot.is_none() && rec.entries.is_empty() && rec.hard_state.is_none());
    }
}
