//! The node's durable storage: the WAL (`<data-dir>/wal/`) and the snapshot
//! files (`<data-dir>/snap/`), and what the node recovers from them.
//!
//! raft reads its log from a `MemStorage` that the node fills from what is
//! recovered here and then from every Ready it persists (like etcd's
//! MemoryStorage fed from its WAL): the WAL is written, never read, while the
//! node runs.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;

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
        // Sized for the data plus the members and length prefixes, so that
        // encoding a large state copies it once.
        let urls: usize = self.members.values().map(|u| u.len() + 16).sum();
        let mut out = Vec::with_capacity(1 + self.kv.len() + urls + 16);
        out.push(SNAPSHOT_VERSION);
        postcard::to_extend(self, out)
            .expect("a NodeSnapshot always encodes")
            .into()
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
    writer: SnapshotWriter,
    /// The index of the newest snapshot marker written to the WAL.
    marker_index: u64,
}

/// Writes the node's own snapshot files on a thread of its own: a file of
/// the whole state, synced, renamed and its directory synced, takes long
/// enough (milliseconds to seconds) to stall every write if the node loop
/// did it. At most one is in flight; the WAL marker follows only once the
/// file is durable, so recovery never meets a marker without its file.
struct SnapshotWriter {
    jobs: Option<mpsc::Sender<Snapshot>>,
    done: mpsc::Receiver<wal::Result<SnapshotMetadata>>,
    thread: Option<JoinHandle<()>>,
    in_flight: bool,
}

impl SnapshotWriter {
    fn start(snaps: SnapStore) -> anyhow::Result<SnapshotWriter> {
        let (jobs, job_rx) = mpsc::channel::<Snapshot>();
        let (done_tx, done) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("snapshot-writer".into())
            .spawn(move || {
                for snap in job_rx {
                    let saved = snaps.save(&snap).map(|_| snap.metadata);
                    if done_tx.send(saved).is_err() {
                        break;
                    }
                }
            })?;
        Ok(SnapshotWriter {
            jobs: Some(jobs),
            done,
            thread: Some(thread),
            in_flight: false,
        })
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        // Let a save in progress finish (or fail) rather than cut it short:
        // an interrupted one leaves only a `.tmp` file, but a finished one
        // spares the next start a longer WAL replay.
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
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
        let writer =
            SnapshotWriter::start(SnapStore::with_keep(dir.join("snap"), KEEP_SNAPSHOTS)?)?;
        let fresh = rec.snapshot.index == 0 && rec.entries.is_empty() && rec.hard_state.is_empty();
        if fresh {
            let mut disk = DiskStorage {
                wal,
                snaps,
                writer,
                marker_index: 0,
            };
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
            DiskStorage {
                wal,
                snaps,
                writer,
                marker_index: rec.snapshot.index,
            },
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

    /// Writes a snapshot file (durably) at once, then its marker in the WAL
    /// (durable after [`DiskStorage::sync`]): for a snapshot from the leader,
    /// which replaces this node's state now. A background save in flight is
    /// finished first, so that the two never race on the directory.
    ///
    /// # Errors
    /// I/O failures.
    pub fn save_snapshot(&mut self, snap: &Snapshot) -> anyhow::Result<()> {
        self.finish_background_save(true)?;
        self.snaps.save(snap)?;
        self.wal.save_snapshot(&snap.metadata)?;
        self.marker_index = self.marker_index.max(snap.metadata.index);
        Ok(())
    }

    /// Starts saving a snapshot of this node's own state on the writer
    /// thread; [`DiskStorage::finish_background_save`] completes it. Returns
    /// false (and does nothing) while another is in flight.
    ///
    /// # Errors
    /// The writer thread is gone (it only stops with the storage).
    pub fn save_snapshot_in_background(&mut self, snap: Snapshot) -> anyhow::Result<bool> {
        if self.writer.in_flight {
            return Ok(false);
        }
        let jobs = self
            .writer
            .jobs
            .as_ref()
            .expect("the writer runs until drop");
        jobs.send(snap)
            .map_err(|_| anyhow::anyhow!("the snapshot writer thread stopped"))?;
        self.writer.in_flight = true;
        Ok(true)
    }

    /// If the background save has finished (or, with `wait`, once it has):
    /// writes its marker to the WAL, syncs, and drops the WAL segments it
    /// covers. Returns the snapshot's index, if one finished now.
    ///
    /// # Errors
    /// The save or the WAL failed.
    pub fn finish_background_save(&mut self, wait: bool) -> anyhow::Result<Option<u64>> {
        if !self.writer.in_flight {
            return Ok(None);
        }
        let saved = if wait {
            self.writer
                .done
                .recv()
                .map_err(|_| mpsc::TryRecvError::Disconnected)
        } else {
            self.writer.done.try_recv()
        };
        let meta = match saved {
            Ok(result) => result?,
            Err(mpsc::TryRecvError::Empty) => return Ok(None),
            Err(mpsc::TryRecvError::Disconnected) => {
                anyhow::bail!("the snapshot writer thread stopped")
            }
        };
        self.writer.in_flight = false;
        // A leader's snapshot saved meanwhile may be newer: never move the
        // marker back (segments past this one may be gone already).
        if meta.index > self.marker_index {
            self.wal.save_snapshot(&meta)?;
            self.marker_index = meta.index;
            self.wal.sync()?;
            self.wal.release_to(meta.index)?;
        }
        Ok(Some(meta.index))
    }

    /// Makes everything written so far durable (one flush: group commit).
    ///
    /// # Errors
    /// I/O failures; the WAL refuses further writes after one.
    pub fn sync(&mut self) -> anyhow::Result<()> {
        Ok(self.wal.sync()?)
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
    fn a_background_save_is_recovered_once_finished() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut disk, rec) = DiskStorage::open(tmp.path(), Some(state()), vec![1]).unwrap();
        let boot = rec.snapshot.unwrap();
        let ents: Vec<Entry> = (2..=9).map(|i| Entry::new(1, i, vec![i as u8])).collect();
        disk.append(&ents).unwrap();
        disk.sync().unwrap();
        let snap = |index| Snapshot {
            data: NodeSnapshot {
                kv: Bytes::from(vec![index as u8; 64]),
                ..state()
            }
            .encode(),
            metadata: SnapshotMetadata {
                index,
                term: 1,
                ..boot.metadata.clone()
            },
        };
        assert!(disk.save_snapshot_in_background(snap(5)).unwrap());
        // One at a time: the second is refused while the first is in flight.
        assert!(!disk.save_snapshot_in_background(snap(6)).unwrap());
        assert_eq!(disk.finish_background_save(true).unwrap(), Some(5));
        assert_eq!(disk.finish_background_save(false).unwrap(), None);
        drop(disk);
        let (mut disk, rec) = DiskStorage::open(tmp.path(), None, vec![]).unwrap();
        assert_eq!(rec.snapshot.unwrap(), snap(5));
        assert_eq!(rec.entries, ents[4..].to_vec());

        // A leader's snapshot saved while an own one is in flight waits for
        // it: the markers stay in order and the newest is recovered.
        assert!(disk.save_snapshot_in_background(snap(7)).unwrap());
        disk.save_snapshot(&snap(8)).unwrap();
        disk.sync().unwrap();
        assert_eq!(disk.finish_background_save(true).unwrap(), None);
        drop(disk);
        let (_disk, rec) = DiskStorage::open(tmp.path(), None, vec![]).unwrap();
        assert_eq!(rec.snapshot.unwrap(), snap(8));
        assert_eq!(rec.entries, ents[7..].to_vec());
    }

    #[test]
    fn a_joining_node_starts_empty() {
        let tmp = tempfile::tempdir().unwrap();
        let (_disk, rec) = DiskStorage::open(tmp.path(), None, vec![]).unwrap();
        assert!(rec.snapshot.is_none() && rec.entries.is_empty() && rec.hard_state.is_none());
    }
}
