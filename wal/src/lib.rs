//! A segmented write-ahead log for raft-core's entries, hard state and
//! snapshot markers, and a store for snapshot files.
//!
//! The log is a directory of preallocated segment files
//! (`<seq:016x>-<first_index:016x>.wal`, 64 MiB by default) holding framed,
//! CRC-chained records (layout in [`record`]). Appends go to an in-memory
//! buffer; [`Wal::sync`] writes everything appended since the last sync and
//! makes it durable with one flush: the group commit of a Raft Ready loop.
//! Recovery reads segments through memory maps, cuts a torn tail off the last
//! segment and reports it, and refuses to open a log with corruption before
//! that tail ([`WalError::Corrupt`] names the segment and offset).
//!
//! # Example
//!
//! ```
//! use raft_core::{Entry, HardState, SnapshotMetadata};
//! use wal::{Options, Wal};
//!
//! # fn main() -> Result<(), wal::WalError> {
//! # let tmp = tempfile::tempdir().unwrap();
//! # let dir = tmp.path().join("wal");
//! // Open (or create) a log. A new log recovers nothing.
//! let (mut wal, recovered) = Wal::open(&dir, Options::default())?;
//! assert!(recovered.entries.is_empty());
//!
//! // One Ready: entries and hard state, then one sync for both.
//! wal.append(&[Entry::new(1, 1, "a"), Entry::new(1, 2, "b"), Entry::new(1, 3, "c")])?;
//! wal.save_hard_state(&HardState { term: 1, vote: 1, commit: 2 })?;
//! wal.sync()?;
//!
//! // A new leader's entries at index 3 replace the old suffix from 3.
//! wal.append(&[Entry::new(2, 3, "C"), Entry::new(2, 4, "D")])?;
//! wal.sync()?;
//! drop(wal);
//!
//! let (mut wal, recovered) = Wal::open(&dir, Options::default())?;
//! assert_eq!(recovered.hard_state.commit, 2);
//! let got: Vec<_> = recovered.entries.iter().map(|e| (e.index, e.term)).collect();
//! assert_eq!(got, [(1, 1), (2, 1), (3, 2), (4, 2)]);
//!
//! // After a snapshot up to index 3 is stored durably (see SnapStore), mark
//! // it in the log, sync, and let the log drop the segments it covers.
//! wal.save_snapshot(&SnapshotMetadata { index: 3, term: 2, ..Default::default() })?;
//! wal.sync()?;
//! wal.release_to(3)?;
//! drop(wal);
//!
//! let (_wal, recovered) = Wal::open(&dir, Options::default())?;
//! assert_eq!(recovered.snapshot.index, 3);
//! assert_eq!(recovered.entries.len(), 1); // index 4
//! # Ok(())
//! # }
//! ```
//!
//! # Guarantees
//!
//! - After `sync()` returns `Ok`, everything appended or saved before it is
//!   recovered by [`Wal::open`], whatever happens next (process kill, power
//!   cut that does not damage synced blocks).
//! - What was appended but not synced may or may not be recovered; what is
//!   recovered is always a prefix of what was written, record by record (an
//!   append split over two segments may come back in part).
//! - A record that was synced and is later damaged is reported as
//!   [`WalError::Corrupt`], not dropped, unless it belongs to the last sync
//!   group in the log, where damage cannot be told from a torn write.
//! - After any I/O error the log refuses further writes
//!   ([`WalError::Poisoned`]); reopen it to recover. (After a failed
//!   `fdatasync`, Linux may have dropped the dirty pages: retrying could
//!   report a success that is not one.)
//!
//! # Snapshots and release
//!
//! The application writes the snapshot with [`SnapStore::save`] (durable
//! when it returns), then [`Wal::save_snapshot`] and [`Wal::sync`], then
//! [`Wal::release_to`], which drops segments whose entries the durable
//! marker covers. On restart, [`Wal::open`] returns the marker and
//! [`SnapStore::load`] the matching snapshot.
#![deny(missing_docs)]

pub mod file;
pub mod record;
mod recovery;
mod segment;
pub mod snap;

use std::collections::VecDeque;
use std::io;
use std::mem;
use std::path::Path;
use std::thread::JoinHandle;

use raft_core::{Entry, HardState, SnapshotMetadata};

pub use crate::file::{DiskDir, SegmentDir, SegmentFile, WriteMethod};
use crate::record::{Kind, Pending, SYNC_BOUNDARY};
use crate::segment::{Active, SegmentInfo};
pub use crate::snap::SnapStore;

/// Errors of the log and the snapshot store.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// An I/O error.
    #[error("wal i/o: {0}")]
    Io(#[from] io::Error),
    /// A damaged or impossible record before the tail of the log, or a
    /// damaged snapshot file.
    #[error("corrupt log segment {segment} at offset {offset}: {reason}")]
    Corrupt {
        /// The file (its path for a [`DiskDir`]).
        segment: String,
        /// The byte offset of the damaged record in the file.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A segment is missing from the sequence.
    #[error("log segment {expected:016x} is missing (the next one present is {found})")]
    MissingSegment {
        /// The sequence number that is missing.
        expected: u64,
        /// The segment found in its place.
        found: String,
    },
    /// The oldest segments left do not reach back to the snapshot marker:
    /// entries in `(snapshot_index, first_index)` are gone.
    #[error(
        "entries after the snapshot at {snapshot_index} are missing: the log starts at {first_index}"
    )]
    MissingEntries {
        /// The index of the last snapshot marker.
        snapshot_index: u64,
        /// The first index the remaining segments hold.
        first_index: u64,
    },
    /// An earlier I/O error left the log in an unknown state.
    #[error("the log failed earlier and must be reopened")]
    Poisoned,
    /// Options out of range.
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// No snapshot file with the requested id.
    #[error("no snapshot file for term {term} index {index}")]
    NoSnapshot {
        /// The term asked for.
        term: u64,
        /// The index asked for.
        index: u64,
    },
}

/// The result type of this crate.
pub type Result<T, E = WalError> = std::result::Result<T, E>;

/// How the log is laid out and run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// The size of a segment file, a multiple of 8 and at least 256 bytes
    /// (default 64 MiB). A record that does not fit in an empty segment gets
    /// a larger one of its own.
    pub segment_size: u64,
    /// How many released segments to keep as spares for reuse as new
    /// segments (default 2). Reusing one costs a rename, where a new one
    /// costs writing `segment_size` zeros.
    pub max_spare_segments: usize,
    /// Prepare the next segment file on a background thread as soon as no
    /// spare is left, so that cutting a segment never waits for the zeros to
    /// be written (default true).
    pub preallocate_in_background: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            segment_size: 64 << 20,
            max_spare_segments: 2,
            preallocate_in_background: true,
        }
    }
}

/// A torn tail cut off the last segment by recovery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The file (its path for a [`DiskDir`]).
    pub segment: String,
    /// The offset of the first damaged record; the log now ends there.
    pub offset: u64,
    /// What was wrong with that record.
    pub reason: String,
}

/// What recovery did besides returning the state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segments replayed.
    pub segments: usize,
    /// Bytes of valid records replayed.
    pub bytes: u64,
    /// The torn tail cut off, if any.
    pub torn_tail: Option<TornTail>,
    /// Leftover temporary files that were removed.
    pub removed_files: Vec<String>,
}

/// The state recovered when a log is opened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// The last hard state saved (all zero if none).
    pub hard_state: HardState,
    /// The last snapshot marker saved (index 0 if none).
    pub snapshot: SnapshotMetadata,
    /// The entries after the snapshot index, consecutive.
    pub entries: Vec<Entry>,
    /// What recovery did.
    pub report: RecoveryReport,
}

/// Counters and sizes of a log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Segment files, the active one included.
    pub segments: usize,
    /// Spare files ready to become segments.
    pub spare_segments: usize,
    /// Total size of the segment files.
    pub bytes: u64,
    /// The first index after the snapshot marker.
    pub first_index: u64,
    /// The last index (the snapshot index if there is no entry after it).
    pub last_index: u64,
    /// Data flushes issued (one per `sync()` that had something to write,
    /// plus two per segment cut).
    pub syncs: u64,
    /// Bytes made durable by those flushes.
    pub bytes_synced: u64,
}

/// The log moves between threads (a server hands it to its disk thread).
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<Wal<DiskDir>>();
    assert_send::<Wal<file::MemDir>>();
    assert_send::<SnapStore>();
};

/// Pending records beyond this size are written out before `sync`, and the
/// device is asked to start writing them back: a large batch's checksums and
/// copies then overlap with the device's work instead of preceding it.
const FLUSH_THRESHOLD: usize = 256 << 10;

/// Segments larger than the configured size are rounded up to this.
const OVERSIZE_ALIGN: u64 = 1 << 20;

/// The terms of a stretch of consecutive entries, as runs of equal terms:
/// `(first index, term)`, ascending. Kept by the writer to decide whether a
/// snapshot marker keeps the entries after it, and built by the replay as
/// it decodes (a separate pass over millions of recovered entries cost 5%
/// of recovery).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct TermRuns(Vec<(u64, u64)>);

impl TermRuns {
    /// Records entry `(index, term)`, which follows the last one recorded.
    #[inline]
    pub(crate) fn push(&mut self, index: u64, term: u64) {
        if self.0.last().is_none_or(|&(_, t)| t != term) {
            self.0.push((index, term));
        }
    }

    /// Forgets the entries from `index` on.
    pub(crate) fn truncate_from(&mut self, index: u64) {
        let k = self.0.partition_point(|&(f, _)| f < index);
        self.0.truncate(k);
    }

    /// Forgets the entries up to `index`; the first entry left is `index + 1`.
    ///
    /// # Panics
    /// If no entry is recorded at or before `index + 1`.
    pub(crate) fn drop_through(&mut self, index: u64) {
        let first = index + 1;
        let k = self.0.partition_point(|&(f, _)| f <= first);
        let term = self.0[k - 1].1;
        self.0.drain(..k);
        self.0.insert(0, (first, term));
    }

    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }

    /// The term of entry `index`, which the caller knows is recorded.
    fn term(&self, index: u64) -> u64 {
        let k = self.0.partition_point(|&(first, _)| first <= index);
        self.0[k - 1].1
    }
}

/// The log's own view of what it holds, enough to check each write.
#[derive(Clone, Debug, Default)]
struct LogState {
    hard_state: HardState,
    snapshot: SnapshotMetadata,
    /// Invariant: `last_index >= snapshot.index`.
    last_index: u64,
    /// The terms of the entries `(snapshot.index, last_index]`.
    terms: TermRuns,
}

impl LogState {
    fn term(&self, index: u64) -> Option<u64> {
        if index == self.snapshot.index {
            return Some(self.snapshot.term);
        }
        if index < self.snapshot.index || index > self.last_index {
            return None;
        }
        Some(self.terms.term(index))
    }

    fn append(&mut self, ents: &[Entry]) {
        self.terms.truncate_from(ents[0].index);
        for e in ents {
            self.terms.push(e.index, e.term);
        }
        self.last_index = ents[ents.len() - 1].index;
    }

    /// Applies a snapshot marker; returns whether the entries after it stay.
    fn apply_snapshot(&mut self, meta: &SnapshotMetadata) -> bool {
        let keep = self.term(meta.index) == Some(meta.term);
        if !keep {
            self.terms.clear();
            self.last_index = meta.index;
        } else if meta.index >= self.last_index {
            self.terms.clear();
        } else {
            // Runs start at `snapshot.index + 1 <= meta.index + 1`.
            self.terms.drop_through(meta.index);
        }
        self.snapshot = meta.clone();
        keep
    }
}

/// A spare being prepared in the background: its name and file.
type Prealloc<F> = JoinHandle<io::Result<(String, F)>>;

/// A write-ahead log (see the [crate docs](crate)).
///
/// `D` is where its files live: a [`DiskDir`] by default, or a
/// [`file::MemDir`] / [`file::FaultyDir`] in tests.
pub struct Wal<D: SegmentDir = DiskDir> {
    dir: D,
    opts: Options,
    /// Every segment before the active one, oldest first.
    /// Invariant: sequence numbers are consecutive, and each was synced
    /// before the next one was created.
    sealed: VecDeque<SegmentInfo>,
    active: Active<D::File>,
    /// Records appended but not yet written to the file.
    pending: Pending,
    /// The chain value of the last record appended.
    crc: u32,
    /// Use: set by a successful sync; the next record carries
    /// [`SYNC_BOUNDARY`].
    boundary_next: bool,
    log: LogState,
    /// The snapshot index as of the last successful sync.
    /// Invariant: `synced_snapshot_index <= log.snapshot.index`.
    synced_snapshot_index: u64,
    /// Names of spare files, ready to become segments.
    spares: Vec<String>,
    next_spare_id: u64,
    prealloc: Option<Prealloc<D::File>>,
    stats: WalStats,
    poisoned: bool,
}

impl Wal<DiskDir> {
    /// Opens the log in directory `path`, creating it if needed, and returns
    /// it with what it recovered.
    ///
    /// # Errors
    /// - [`WalError::Corrupt`], [`WalError::MissingSegment`],
    ///   [`WalError::MissingEntries`] if the log is damaged (a torn tail is
    ///   not an error: it is cut and reported in [`RecoveryReport`]);
    /// - [`WalError::Io`], including `WouldBlock` if another process (or
    ///   another `Wal` in this one) has the directory open;
    /// - [`WalError::InvalidOptions`].
    pub fn open(path: impl AsRef<Path>, opts: Options) -> Result<(Wal<DiskDir>, Recovered)> {
        Wal::open_in(DiskDir::open(path)?, opts)
    }
}

impl<D: SegmentDir> Wal<D> {
    /// Opens the log in `dir`; see [`Wal::open`].
    ///
    /// # Errors
    /// As [`Wal::open`].
    pub fn open_in(dir: D, opts: Options) -> Result<(Wal<D>, Recovered)> {
        if opts.segment_size < 256 || opts.segment_size % 8 != 0 {
            return Err(WalError::InvalidOptions(format!(
                "segment_size {} is not a multiple of 8 of at least 256",
                opts.segment_size
            )));
        }
        let listing = recovery::list(&dir)?;
        let mut removed_files = Vec::new();
        for name in &listing.temps {
            dir.remove(name)?;
            removed_files.push(dir.describe(name));
        }
        let next_spare_id = listing.spares.last().map_or(1, |(id, _)| id + 1);
        let spares = listing.spares.into_iter().map(|(_, n)| n).collect();
        if listing.segments.is_empty() {
            let mut wal = Wal::create(dir, opts, spares, next_spare_id)?;
            if !removed_files.is_empty() {
                wal.dir.sync()?;
            }
            wal.maybe_prealloc();
            let report = RecoveryReport {
                segments: 0,
                removed_files,
                ..Default::default()
            };
            return Ok((
                wal,
                Recovered {
                    report,
                    ..Default::default()
                },
            ));
        }

        let rec = recovery::recover(&dir, &listing.segments)?;
        let (info, file, end, crc) = rec.active;
        let replay = rec.replay;
        #[cfg(debug_assertions)]
        {
            let mut terms = TermRuns::default();
            for e in &replay.entries {
                terms.push(e.index, e.term);
            }
            debug_assert_eq!(terms, replay.terms, "term runs built during replay");
        }
        let log = LogState {
            hard_state: replay.hard_state,
            snapshot: replay.snapshot.clone(),
            last_index: replay.last_index(),
            terms: replay.terms,
        };
        let mut wal = Wal {
            dir,
            opts,
            sealed: rec.sealed.into(),
            active: Active {
                info,
                file,
                written: end,
                synced: 0,
            },
            pending: Pending::new(),
            crc,
            boundary_next: true,
            log,
            synced_snapshot_index: 0,
            spares,
            next_spare_id,
            prealloc: None,
            stats: WalStats::default(),
            poisoned: false,
        };
        let torn = rec.torn;
        let result = wal.settle(torn.is_some(), !removed_files.is_empty());
        if let Err(e) = result {
            wal.poisoned = true;
            return Err(e);
        }
        wal.maybe_prealloc();
        let recovered = Recovered {
            hard_state: replay.hard_state,
            snapshot: replay.snapshot,
            entries: replay.entries,
            report: RecoveryReport {
                segments: listing.segments.len(),
                bytes: rec.bytes,
                torn_tail: torn,
                removed_files,
            },
        };
        Ok((wal, recovered))
    }

    /// Makes what recovery found durable, so that every record written from
    /// now on follows durable data (the sync-boundary flag relies on it).
    /// After a torn tail the segment is closed where the valid records end
    /// and a new one is cut: the torn bytes left past the end mark must never
    /// sit in the same chain as new records.
    fn settle(&mut self, torn: bool, dir_changed: bool) -> Result<()> {
        if torn {
            let end = self.active.written;
            let n = (self.active.info.len - end).min(8) as usize;
            self.active
                .file
                .write_at(end, &[io::IoSlice::new(&[0u8; 8][..n])])?;
        }
        self.active.file.sync()?;
        self.active.synced = self.active.written;
        self.synced_snapshot_index = self.log.snapshot.index;
        if dir_changed {
            self.dir.sync()?;
        }
        if torn {
            self.cut(0)?;
        }
        Ok(())
    }

    /// A new log: its first segment, with an empty state.
    fn create(dir: D, opts: Options, spares: Vec<String>, next_spare_id: u64) -> Result<Wal<D>> {
        let header = record::SegmentHeader {
            magic: record::MAGIC,
            version: record::VERSION,
            seq: 1,
            first_index: 1,
            prev_crc: 0,
            prev_end: 0,
            hard_state: Default::default(),
            snapshot: Default::default(),
        };
        let mut wal_spares = spares;
        let mut next_id = next_spare_id;
        let size = opts.segment_size;
        let (tmp, mut file) = take_file(&dir, size, &mut wal_spares, &mut next_id, None)?;
        let (crc, end) = segment::write_header(&mut file, &header)?;
        let name = segment::segment_name(1, 1);
        dir.rename(&tmp, &name)?;
        dir.sync()?;
        let info = SegmentInfo {
            seq: 1,
            first_index: 1,
            name,
            len: file.len(),
            max_index: 0,
        };
        Ok(Wal {
            dir,
            opts,
            sealed: VecDeque::new(),
            active: Active {
                info,
                file,
                written: end,
                synced: end,
            },
            pending: Pending::new(),
            crc,
            boundary_next: true,
            log: LogState::default(),
            synced_snapshot_index: 0,
            spares: wal_spares,
            next_spare_id: next_id,
            prealloc: None,
            stats: WalStats {
                syncs: 1,
                ..Default::default()
            },
            poisoned: false,
        })
    }

    /// Appends entries: consecutive indexes, the first at most
    /// `last_index() + 1`. An entry at an index `i <= last_index()` replaces
    /// the entries from `i` on (a Raft log conflict). Not durable until
    /// [`Wal::sync`].
    ///
    /// # Errors
    /// [`WalError::Io`] if a segment had to be cut and that failed (the log
    /// is then poisoned), [`WalError::Poisoned`].
    ///
    /// # Panics
    /// If the indexes are not consecutive, the first is at or below the
    /// snapshot index, or it leaves a gap after `last_index()`.
    pub fn append(&mut self, entries: &[Entry]) -> Result<()> {
        self.check()?;
        let Some(first) = entries.first() else {
            return Ok(());
        };
        for (k, e) in entries.iter().enumerate() {
            assert_eq!(
                e.index,
                first.index + k as u64,
                "entries are not consecutive: index {} (term {}) follows {}",
                e.index,
                e.term,
                first.index + k as u64 - 1
            );
        }
        assert!(
            first.index > self.log.snapshot.index,
            "entry {} (term {}) is at or below the snapshot index {}",
            first.index,
            first.term,
            self.log.snapshot.index
        );
        assert!(
            first.index <= self.log.last_index + 1,
            "entry {} (term {}) leaves a gap after the last index {}",
            first.index,
            first.term,
            self.log.last_index
        );
        let r = self.append_inner(entries);
        self.poison_on_err(r)
    }

    fn append_inner(&mut self, entries: &[Entry]) -> Result<()> {
        let mut rest = entries;
        while !rest.is_empty() {
            let sum = rest.iter().map(record::entry_wire_len).sum();
            let whole = record::entries_record_len(rest[0].index, rest.len() as u64, sum);
            // A batch that is small next to a segment is not split over two:
            // cutting first leaves the old segment with nothing unsynced, so
            // the cut needs no extra flush of it (one flush per cut fewer).
            // At most a quarter of a segment stays unused.
            if whole > self.active.avail(&self.pending) && whole <= self.opts.segment_size / 4 {
                self.cut(whole)?;
            }
            // Usually the whole batch fits: no second pass over it.
            let avail = self.active.avail(&self.pending);
            let mut n = if whole <= avail {
                rest.len()
            } else {
                record::entries_that_fit(rest, avail)
            };
            // A large batch goes out in pieces of about FLUSH_THRESHOLD.
            let room = FLUSH_THRESHOLD.saturating_sub(self.pending.len()) as u64;
            if whole.min(avail) > room {
                n = n.min(record::entries_that_fit(rest, room).max(1));
            }
            if n == 0 {
                let one =
                    record::entries_record_len(rest[0].index, 1, record::entry_wire_len(&rest[0]));
                self.cut(one)?;
                n = record::entries_that_fit(rest, self.active.avail(&self.pending));
                assert!(n > 0, "a fresh segment holds at least one entry");
            }
            let (chunk, tail) = rest.split_at(n);
            let type_byte = self.type_byte(Kind::Entries);
            let (crc, _) = self.pending.push_entries(type_byte, self.seed(), chunk);
            self.crc = crc;
            self.log.append(chunk);
            let last = chunk[chunk.len() - 1].index;
            self.active.info.max_index = self.active.info.max_index.max(last);
            rest = tail;
            if self.pending.len() >= FLUSH_THRESHOLD {
                let from = self.active.written;
                self.flush()?;
                self.active.start_writeback(from);
            }
        }
        Ok(())
    }

    /// Saves the hard state. Not durable until [`Wal::sync`].
    ///
    /// # Errors
    /// As [`Wal::append`].
    pub fn save_hard_state(&mut self, hs: &HardState) -> Result<()> {
        self.check()?;
        let wire = record::HardStateWire::from(hs);
        let r = self.push_small(Kind::HardState, &wire);
        if r.is_ok() {
            self.log.hard_state = *hs;
        }
        self.poison_on_err(r)
    }

    /// Saves a snapshot marker: the entries up to `meta.index` are in a
    /// snapshot and no longer needed. If the log holds the entry
    /// `(meta.index, meta.term)`, the entries after it stay; otherwise (the
    /// snapshot came from a leader whose log differs, or lies beyond ours)
    /// all entries go and the log continues at `meta.index + 1`, as raft's
    /// own log does when it restores a snapshot. Not durable until
    /// [`Wal::sync`].
    ///
    /// # Errors
    /// As [`Wal::append`].
    ///
    /// # Panics
    /// If `meta.index` is below the last snapshot marker's index.
    pub fn save_snapshot(&mut self, meta: &SnapshotMetadata) -> Result<()> {
        self.check()?;
        assert!(
            meta.index >= self.log.snapshot.index,
            "snapshot marker (index {}, term {}) goes back from index {}",
            meta.index,
            meta.term,
            self.log.snapshot.index
        );
        let keep_suffix = self.log.term(meta.index) == Some(meta.term);
        let wire = record::SnapshotRecord {
            meta: meta.into(),
            keep_suffix,
        };
        let r = self.push_small(Kind::Snapshot, &wire);
        if r.is_ok() {
            let kept = self.log.apply_snapshot(meta);
            debug_assert_eq!(kept, keep_suffix);
        }
        self.poison_on_err(r)
    }

    /// Saves what one Raft Ready asks to persist, in the order recovery must
    /// see it: the snapshot marker (it resets the log the entries continue),
    /// the entries, then the hard state (whose commit index may point into
    /// the new entries). Not durable until [`Wal::sync`].
    ///
    /// # Errors
    /// As [`Wal::append`].
    ///
    /// # Panics
    /// As [`Wal::save_snapshot`] and [`Wal::append`].
    pub fn save(
        &mut self,
        hard_state: Option<&HardState>,
        entries: &[Entry],
        snapshot: Option<&SnapshotMetadata>,
    ) -> Result<()> {
        if let Some(meta) = snapshot {
            self.save_snapshot(meta)?;
        }
        self.append(entries)?;
        if let Some(hs) = hard_state {
            self.save_hard_state(hs)?;
        }
        Ok(())
    }

    /// Makes everything appended and saved so far durable, with one write
    /// and one data flush (`fdatasync`). Does nothing if nothing changed.
    ///
    /// # Errors
    /// [`WalError::Io`] (the log is then poisoned), [`WalError::Poisoned`].
    pub fn sync(&mut self) -> Result<()> {
        self.check()?;
        if self.pending.is_empty() && self.active.written == self.active.synced {
            return Ok(());
        }
        let r = self.flush().and_then(|_| self.sync_active());
        self.poison_on_err(r)
    }

    /// Removes (or keeps as spares) the oldest segments whose entries all lie
    /// at or below both `index` and the snapshot marker as of the last sync.
    /// The active segment always stays. Returns how many were released.
    ///
    /// # Errors
    /// [`WalError::Io`] (the log is then poisoned), [`WalError::Poisoned`].
    pub fn release_to(&mut self, index: u64) -> Result<usize> {
        self.check()?;
        let upto = index.min(self.synced_snapshot_index);
        let mut released = 0;
        while self.sealed.front().is_some_and(|s| s.max_index <= upto) {
            let info = self.sealed.pop_front().expect("checked");
            let r = self.release(info);
            self.poison_on_err(r)?;
            released += 1;
        }
        Ok(released)
    }

    fn release(&mut self, info: SegmentInfo) -> Result<()> {
        // One directory sync per segment, oldest first, so that a crash
        // never leaves a gap in the sequence.
        if info.len == self.opts.segment_size && self.spares.len() < self.opts.max_spare_segments {
            let spare = segment::spare_name(self.next_spare_id);
            self.next_spare_id += 1;
            self.dir.rename(&info.name, &spare)?;
            self.dir.sync()?;
            self.spares.push(spare);
        } else {
            self.dir.remove(&info.name)?;
            self.dir.sync()?;
        }
        Ok(())
    }

    /// Counters and sizes.
    pub fn stats(&self) -> WalStats {
        WalStats {
            segments: self.sealed.len() + 1,
            spare_segments: self.spares.len(),
            bytes: self.sealed.iter().map(|s| s.len).sum::<u64>() + self.active.info.len,
            first_index: self.log.snapshot.index + 1,
            last_index: self.log.last_index,
            ..self.stats.clone()
        }
    }

    /// The last index appended (the snapshot index if no entry follows it).
    pub fn last_index(&self) -> u64 {
        self.log.last_index
    }

    /// The first index after the snapshot marker.
    pub fn first_index(&self) -> u64 {
        self.log.snapshot.index + 1
    }

    /// The last hard state saved.
    pub fn hard_state(&self) -> HardState {
        self.log.hard_state
    }

    /// The last snapshot marker saved.
    pub fn snapshot(&self) -> &SnapshotMetadata {
        &self.log.snapshot
    }

    /// The directory of the log.
    pub fn dir(&self) -> &D {
        &self.dir
    }

    fn check(&self) -> Result<()> {
        if self.poisoned {
            Err(WalError::Poisoned)
        } else {
            Ok(())
        }
    }

    fn poison_on_err<T>(&mut self, r: Result<T>) -> Result<T> {
        if r.is_err() {
            self.poisoned = true;
        }
        r
    }

    fn seed(&self) -> u32 {
        self.crc ^ record::salt(self.active.info.seq)
    }

    fn type_byte(&mut self, kind: Kind) -> u8 {
        let flag = if mem::take(&mut self.boundary_next) {
            SYNC_BOUNDARY
        } else {
            0
        };
        kind as u8 | flag
    }

    fn push_small<T: serde::Serialize>(&mut self, kind: Kind, payload: &T) -> Result<()> {
        let len = record::record_len(payload);
        if len > self.active.avail(&self.pending) {
            self.cut(len)?;
        }
        let type_byte = self.type_byte(kind);
        let (crc, _) = self.pending.push(type_byte, self.seed(), payload);
        self.crc = crc;
        if self.pending.len() >= FLUSH_THRESHOLD {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.active.flush(&mut self.pending)?;
        Ok(())
    }

    fn sync_active(&mut self) -> Result<()> {
        let n = self.active.sync()?;
        self.stats.syncs += 1;
        self.stats.bytes_synced += n;
        self.synced_snapshot_index = self.log.snapshot.index;
        self.boundary_next = true;
        Ok(())
    }

    /// Closes the active segment and starts the next one, big enough for a
    /// record of `record_len` bytes after its header.
    fn cut(&mut self, record_len: u64) -> Result<()> {
        self.flush()?;
        if self.active.written > self.active.synced {
            self.sync_active()?;
        }
        let seq = self.active.info.seq + 1;
        let first_index = self.log.last_index + 1;
        let header = record::SegmentHeader {
            magic: record::MAGIC,
            version: record::VERSION,
            seq,
            first_index,
            prev_crc: self.crc,
            prev_end: self.active.written,
            hard_state: (&self.log.hard_state).into(),
            snapshot: (&self.log.snapshot).into(),
        };
        let need = record::record_len(&header) + record_len;
        let size = if need <= self.opts.segment_size {
            self.opts.segment_size
        } else {
            need.div_ceil(OVERSIZE_ALIGN) * OVERSIZE_ALIGN
        };
        let prealloc = if size == self.opts.segment_size {
            self.prealloc.take()
        } else {
            None
        };
        let (tmp, mut file) = take_file(
            &self.dir,
            size,
            &mut self.spares,
            &mut self.next_spare_id,
            prealloc,
        )?;
        let (crc, end) = segment::write_header(&mut file, &header)?;
        let name = segment::segment_name(seq, first_index);
        self.dir.rename(&tmp, &name)?;
        self.dir.sync()?;
        self.stats.syncs += 1;
        let info = SegmentInfo {
            seq,
            first_index,
            name,
            len: file.len(),
            max_index: 0,
        };
        let old = mem::replace(
            &mut self.active,
            Active {
                info,
                file,
                written: end,
                synced: end,
            },
        );
        self.sealed.push_back(old.info);
        self.crc = crc;
        self.boundary_next = true;
        self.maybe_prealloc();
        Ok(())
    }

    /// Starts preparing a spare in the background if none is left.
    fn maybe_prealloc(&mut self) {
        if !self.opts.preallocate_in_background
            || !self.spares.is_empty()
            || self.prealloc.is_some()
        {
            return;
        }
        let name = segment::spare_name(self.next_spare_id);
        self.next_spare_id += 1;
        let dir = self.dir.clone();
        let size = self.opts.segment_size;
        let spawned = std::thread::Builder::new()
            .name("wal-prealloc".into())
            .spawn(move || dir.create(&name, size).map(|f| (name, f)));
        // If no thread can be spawned, the next cut creates the file itself.
        self.prealloc = spawned.ok();
    }
}

/// A file of `size` bytes to become the next segment, and its current name:
/// a spare of the right size, the one being prepared, or a new one.
fn take_file<D: SegmentDir>(
    dir: &D,
    size: u64,
    spares: &mut Vec<String>,
    next_id: &mut u64,
    prealloc: Option<Prealloc<D::File>>,
) -> io::Result<(String, D::File)> {
    if let Some(handle) = prealloc {
        let made = handle
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the preallocation thread panicked")));
        // A failed preallocation only costs the synchronous path below.
        if let Ok((name, file)) = made {
            if file.len() == size {
                return Ok((name, file));
            }
            spares.push(name);
        }
    }
    while let Some(name) = spares.pop() {
        let file = dir.open(&name)?;
        if file.len() == size {
            return Ok((name, file));
        }
        drop(file);
        dir.remove(&name)?;
    }
    let name = segment::spare_name(*next_id);
    *next_id += 1;
    let file = dir.create(&name, size)?;
    Ok((name, file))
}

impl<D: SegmentDir> Drop for Wal<D> {
    fn drop(&mut self) {
        // Hand what was appended to the file (not durably): a clean shutdown
        // without a sync loses nothing unless the machine goes down too.
        if !self.poisoned {
            let _ = self.active.flush(&mut self.pending);
        }
        if let Some(handle) = self.prealloc.take() {
            if let Ok(Ok((name, file))) = handle.join() {
                drop(file);
                self.spares.push(name);
            }
        }
    }
}
