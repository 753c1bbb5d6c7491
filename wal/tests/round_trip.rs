//! Round trips: what is appended, saved and synced comes back on reopen,
//! across segment boundaries, suffix overwrites, snapshots and releases.
//! Each scenario runs on real files and on the in-memory directory.

mod common;

use common::{Model, assert_recovered, batch, entry};
use raft_core::{Entry, HardState, SnapshotMetadata};
use wal::file::{Faults, FaultyDir, MemDir};
use wal::{DiskDir, Options, Recovered, SegmentDir, Wal, WalError, WriteMethod};

const SMALL: u64 = 4096;

fn opts(segment_size: u64) -> Options {
    Options {
        segment_size,
        max_spare_segments: 2,
        preallocate_in_background: false,
    }
}

/// Where a test's log lives.
trait Backend {
    type D: SegmentDir;
    fn open(&self, opts: &Options) -> Result<(Wal<Self::D>, Recovered), WalError>;
    fn files(&self) -> Vec<String>;
    fn remove(&self, name: &str);

    /// Appends `ents` to the log and to the model, syncs, closes the log and
    /// reopens it; what it recovers must match the model.
    fn write_and_reopen(
        &self,
        o: &Options,
        mut w: Wal<Self::D>,
        m: &mut Model,
        ents: &[Entry],
    ) -> (Wal<Self::D>, Recovered) {
        w.append(ents).unwrap();
        m.append(ents);
        w.sync().unwrap();
        drop(w);
        let (w, r) = self.open(o).unwrap();
        assert_recovered(&r, m);
        (w, r)
    }
}

struct Disk(tempfile::TempDir, WriteMethod);

impl Disk {
    fn new() -> Disk {
        Disk(tempfile::tempdir().unwrap(), WriteMethod::Pwrite)
    }
    fn path(&self) -> std::path::PathBuf {
        self.0.path().join("wal")
    }
}

impl Backend for Disk {
    type D = DiskDir;
    fn open(&self, opts: &Options) -> Result<(Wal<DiskDir>, Recovered), WalError> {
        Wal::open_in(DiskDir::with_method(self.path(), self.1)?, opts.clone())
    }
    fn files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n != "LOCK")
            .collect();
        v.sort();
        v
    }
    fn remove(&self, name: &str) {
        std::fs::remove_file(self.path().join(name)).unwrap();
    }
}

struct Mem(MemDir);

impl Backend for Mem {
    type D = MemDir;
    fn open(&self, opts: &Options) -> Result<(Wal<MemDir>, Recovered), WalError> {
        Wal::open_in(self.0.clone(), opts.clone())
    }
    fn files(&self) -> Vec<String> {
        self.0.list().unwrap()
    }
    fn remove(&self, name: &str) {
        self.0.remove(name).unwrap();
    }
}

fn segments(files: &[String]) -> Vec<&String> {
    files.iter().filter(|f| f.ends_with(".wal")).collect()
}

macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[test]
            fn disk() {
                super::$name(super::Disk::new());
            }
            #[test]
            fn mem() {
                super::$name(super::Mem(wal::file::MemDir::new()));
            }
        }
    };
}

fn across_segments(b: impl Backend) {
    let o = opts(SMALL);
    let mut m = Model::default();
    let (mut w, r) = b.open(&o).unwrap();
    assert_recovered(&r, &m);
    let mut next = 1;
    for round in 0..40u64 {
        let ents = batch(next, 1 + round % 7, 1, 100 + (round as usize * 37) % 300);
        w.append(&ents).unwrap();
        m.append(&ents);
        next += ents.len() as u64;
        m.hard_state = HardState {
            term: 1,
            vote: 1,
            commit: next - 1,
        };
        w.save_hard_state(&m.hard_state).unwrap();
        w.sync().unwrap();
    }
    let stats = w.stats();
    assert!(stats.segments > 3, "{stats:?}");
    assert_eq!((stats.first_index, stats.last_index), (1, next - 1));
    assert!(stats.syncs >= 40 && stats.bytes_synced > 40 * 100);
    drop(w);
    let (w, r) = b.open(&o).unwrap();
    assert_recovered(&r, &m);
    assert_eq!(r.report.segments, stats.segments);
    assert!(r.report.torn_tail.is_none());
    // The log goes on where it stopped.
    let ents = batch(next, 50, 2, 64);
    b.write_and_reopen(&o, w, &mut m, &ents);
}
both!(across_segments);

fn overwrite_suffix(b: impl Backend) {
    let o = opts(SMALL);
    let mut m = Model::default();
    let (mut w, _) = b.open(&o).unwrap();
    for first in (1..=300).step_by(10) {
        let ents = batch(first, 10, 1, 100);
        w.append(&ents).unwrap();
        m.append(&ents);
        w.sync().unwrap();
    }
    // A new leader's entries replace the suffix from 50, which lies several
    // segments back.
    let ents = batch(50, 10, 2, 120);
    w.append(&ents).unwrap();
    m.append(&ents);
    assert_eq!(w.last_index(), 59);
    w.sync().unwrap();
    drop(w);
    let (mut w, r) = b.open(&o).unwrap();
    assert_recovered(&r, &m);
    // Overwrite again inside the new suffix, then grow past the old end; a
    // clean close without sync keeps it too.
    let ents = batch(55, 300, 3, 90);
    w.append(&ents).unwrap();
    m.append(&ents);
    let ents = batch(354, 1, 4, 10);
    w.append(&ents).unwrap();
    m.append(&ents);
    drop(w);
    let (_w, r) = b.open(&o).unwrap();
    assert_recovered(&r, &m);
    assert_eq!(r.entries.last().unwrap().index, 354);
}
both!(overwrite_suffix);

fn snapshot_release_reopen(b: impl Backend) {
    let o = opts(SMALL);
    let mut m = Model::default();
    let (mut w, _) = b.open(&o).unwrap();
    let append = |w: &mut Wal<_>, m: &mut Model, n: u64| {
        let ents = batch(m.last_index() + 1, n, 1, 200);
        w.append(&ents).unwrap();
        m.append(&ents);
        w.sync().unwrap();
    };
    for _ in 0..30 {
        append(&mut w, &mut m, 5);
    }
    let before = w.stats();
    let meta = SnapshotMetadata {
        index: 100,
        term: 1,
        conf_state: raft_core::ConfState::with_voters([1, 2, 3]),
    };
    w.save_snapshot(&meta).unwrap();
    m.save_snapshot(&meta);
    // The marker is not durable yet: nothing may go.
    assert_eq!(w.release_to(100).unwrap(), 0);
    w.sync().unwrap();
    let released = w.release_to(100).unwrap();
    assert!(released > 0);
    let after = w.stats();
    assert_eq!(after.segments, before.segments - released);
    assert_eq!(after.spare_segments, released.min(2));
    assert_eq!(after.first_index, 101);
    // Nothing beyond the durable marker goes, whatever index is asked.
    assert_eq!(w.release_to(u64::MAX).unwrap(), 0);
    drop(w);
    let (mut w, r) = b.open(&o).unwrap();
    assert_recovered(&r, &m);
    assert_eq!(r.report.segments, after.segments);
    // Keep going: spares get reused, the directory stays small.
    for round in 0..20 {
        append(&mut w, &mut m, 5);
        if round % 5 == 4 {
            let upto = m.last_index() - 20;
            let meta = SnapshotMetadata {
                index: upto,
                term: 1,
                ..Default::default()
            };
            w.save_snapshot(&meta).unwrap();
            m.save_snapshot(&meta);
            w.sync().unwrap();
            w.release_to(upto).unwrap();
            let files = b.files();
            assert!(files.len() <= segments(&files).len() + 2, "{files:?}");
        }
    }
    drop(w);
    let (_w, r) = b.open(&o).unwrap();
    assert_recovered(&r, &m);
}
both!(snapshot_release_reopen);

fn leader_snapshot_drops_conflicting_suffix(b: impl Backend) {
    let o = opts(SMALL);
    let mut m = Model::default();
    let (mut w, _) = b.open(&o).unwrap();
    let ents = batch(1, 20, 1, 50);
    w.append(&ents).unwrap();
    m.append(&ents);
    // The leader's snapshot at 15 has term 2: our 15 is of term 1.
    let meta = SnapshotMetadata {
        index: 15,
        term: 2,
        ..Default::default()
    };
    w.save_snapshot(&meta).unwrap();
    m.save_snapshot(&meta);
    assert_eq!(w.last_index(), 15);
    let ents = batch(16, 3, 2, 50);
    w.append(&ents).unwrap();
    m.append(&ents);
    // A snapshot past the end of the log.
    let meta = SnapshotMetadata {
        index: 100,
        term: 3,
        ..Default::default()
    };
    w.save_snapshot(&meta).unwrap();
    m.save_snapshot(&meta);
    let ents = batch(101, 2, 3, 50);
    w.append(&ents).unwrap();
    m.append(&ents);
    // Re-saving the same marker keeps the suffix.
    w.save_snapshot(&meta).unwrap();
    m.save_snapshot(&meta);
    w.sync().unwrap();
    drop(w);
    let (w, r) = b.open(&o).unwrap();
    assert_recovered(&r, &m);
    assert_eq!((w.first_index(), w.last_index()), (101, 102));
}
both!(leader_snapshot_drops_conflicting_suffix);

fn oversized_entry_gets_its_own_segment(b: impl Backend) {
    let o = opts(SMALL);
    let mut m = Model::default();
    let (mut w, _) = b.open(&o).unwrap();
    let ents = vec![
        entry(1, 1, 100),
        entry(2, 1, 3 * SMALL as usize),
        entry(3, 1, 10),
    ];
    w.append(&ents).unwrap();
    m.append(&ents);
    m.hard_state.commit = 3;
    w.save_hard_state(&m.hard_state).unwrap();
    w.sync().unwrap();
    assert!(w.stats().bytes >= (1 << 20) + SMALL);
    drop(w);
    let (_w, r) = b.open(&o).unwrap();
    assert_recovered(&r, &m);
}
both!(oversized_entry_gets_its_own_segment);

fn save_orders_a_ready(b: impl Backend) {
    let o = opts(SMALL);
    let mut m = Model::default();
    let (mut w, _) = b.open(&o).unwrap();
    let ents = batch(1, 10, 1, 30);
    w.save(
        Some(&HardState {
            term: 1,
            vote: 2,
            commit: 0,
        }),
        &ents,
        None,
    )
    .unwrap();
    m.append(&ents);
    // A Ready with a snapshot from the leader and the entries after it.
    let meta = SnapshotMetadata {
        index: 50,
        term: 4,
        ..Default::default()
    };
    let ents = batch(51, 5, 4, 30);
    let hs = HardState {
        term: 4,
        vote: 0,
        commit: 53,
    };
    w.save(Some(&hs), &ents, Some(&meta)).unwrap();
    m.save_snapshot(&meta);
    m.append(&ents);
    m.hard_state = hs;
    w.sync().unwrap();
    drop(w);
    let (_w, r) = b.open(&o).unwrap();
    assert_recovered(&r, &m);
}
both!(save_orders_a_ready);

fn missing_segment_is_an_error(b: impl Backend) {
    let o = opts(SMALL);
    let (mut w, _) = b.open(&o).unwrap();
    for first in (1..=200).step_by(10) {
        w.append(&batch(first, 10, 1, 100)).unwrap();
        w.sync().unwrap();
    }
    drop(w);
    let files = b.files();
    let segs = segments(&files);
    assert!(segs.len() >= 4);
    // A hole in the middle.
    b.remove(segs[2]);
    match b.open(&o) {
        Err(WalError::MissingSegment { expected: 3, found }) => {
            assert!(found.contains(&segs[3][..16]))
        }
        other => panic!("{:?}", other.map(|(_, r)| r.report)),
    }
    // A missing head: the entries before the first segment left are gone
    // and no snapshot covers them.
    b.remove(segs[0]);
    b.remove(segs[1]);
    match b.open(&o) {
        Err(WalError::MissingEntries {
            snapshot_index: 0,
            first_index,
        }) => assert!(first_index > 1),
        other => panic!("{:?}", other.map(|(_, r)| r.report)),
    }
}
both!(missing_segment_is_an_error);

/// Entries `first..first + n` of `term`, their sizes taken in turn from
/// `sizes`: payloads above 2 KiB are written from their own buffers, smaller
/// ones copied, so the two kinds of pieces alternate in the write.
fn mixed(first: u64, n: u64, term: u64, sizes: &[usize]) -> Vec<raft_core::Entry> {
    (first..first + n)
        .map(|i| entry(i, term, sizes[i as usize % sizes.len()]))
        .collect()
}

fn many_large_entries_in_one_write(b: impl Backend) {
    // More pieces than one `pwritev` takes (1024): the write is split, at
    // varying places inside records and between a framing and its payload.
    let o = opts(16 << 20);
    let mut m = Model::default();
    let (mut w, _) = b.open(&o).unwrap();
    let ents = mixed(1, 1500, 1, &[2049, 10, 5000, 0, 4096, 2048, 3, 3000]);
    w.append(&ents).unwrap();
    m.append(&ents);
    m.hard_state.commit = 1500;
    w.save_hard_state(&m.hard_state).unwrap();
    w.sync().unwrap();
    // Over 4 MiB of large entries: part of it is written before the sync.
    let ents = mixed(1501, 1300, 1, &[4096, 3500]);
    let (w, r) = b.write_and_reopen(&o, w, &mut m, &ents);
    assert!(r.report.torn_tail.is_none());
    // An overwrite of the suffix, from the middle of the last write.
    let ents = mixed(2000, 1100, 2, &[2100, 1, 8000]);
    b.write_and_reopen(&o, w, &mut m, &ents);
}
both!(many_large_entries_in_one_write);

fn large_entries_roll_over_segments(b: impl Backend) {
    // Batches of large entries, each several times a segment: every batch
    // is split over segments, each part a record of shared payloads.
    let o = opts(64 << 10);
    let mut m = Model::default();
    let (mut w, _) = b.open(&o).unwrap();
    let mut next = 1;
    for round in 0..12u64 {
        let ents = mixed(next, 40 + round, 1, &[2049, 6000, 100, 4096, 30_000]);
        next += ents.len() as u64;
        w.append(&ents).unwrap();
        m.append(&ents);
        m.hard_state.commit = next - 1;
        w.save_hard_state(&m.hard_state).unwrap();
        w.sync().unwrap();
    }
    assert!(w.stats().segments > 50, "{:?}", w.stats());
    drop(w);
    let (w, r) = b.open(&o).unwrap();
    assert_recovered(&r, &m);
    assert!(r.report.torn_tail.is_none());
    let ents = mixed(next, 30, 2, &[70_000, 5000]);
    b.write_and_reopen(&o, w, &mut m, &ents);
}
both!(large_entries_roll_over_segments);

#[test]
fn mmap_write_method_round_trips() {
    across_segments(Disk(tempfile::tempdir().unwrap(), WriteMethod::Mmap));
    large_entries_roll_over_segments(Disk(tempfile::tempdir().unwrap(), WriteMethod::Mmap));
}

#[test]
fn second_open_of_a_directory_is_refused() {
    let d = Disk::new();
    let (_w, _) = d.open(&opts(SMALL)).unwrap();
    match d.open(&opts(SMALL)) {
        Err(WalError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock),
        other => panic!("{:?}", other.map(|(_, r)| r.report)),
    }
}

#[test]
fn background_preallocation_prepares_the_next_segment() {
    let d = Disk::new();
    let o = Options {
        preallocate_in_background: true,
        ..opts(64 << 10)
    };
    let mut m = Model::default();
    let (mut w, _) = d.open(&o).unwrap();
    for first in (1..=2000).step_by(50) {
        let ents = batch(first, 50, 1, 100);
        w.append(&ents).unwrap();
        m.append(&ents);
        w.sync().unwrap();
    }
    assert!(w.stats().segments >= 2);
    drop(w);
    // At most one spare is left (being prepared when the log closed).
    let files = d.files();
    assert!(
        files.iter().filter(|f| f.ends_with(".spare")).count() <= 1,
        "{files:?}"
    );
    let (_w, r) = d.open(&o).unwrap();
    assert_recovered(&r, &m);
}

#[test]
fn invalid_options_are_refused() {
    let err = Wal::open_in(MemDir::new(), opts(100)).err().unwrap();
    assert!(matches!(err, WalError::InvalidOptions(_)));
    let err = Wal::open_in(MemDir::new(), opts(4100)).err().unwrap();
    assert!(matches!(err, WalError::InvalidOptions(_)));
}

#[test]
fn an_io_error_poisons_the_log() {
    let faults = Faults::new();
    let mem = MemDir::new();
    let dir = FaultyDir::new(mem.clone(), faults.clone());
    let (mut w, _) = Wal::open_in(dir, opts(SMALL)).unwrap();
    w.append(&batch(1, 3, 1, 10)).unwrap();
    w.sync().unwrap();
    w.append(&batch(4, 3, 1, 10)).unwrap();
    // The write succeeds, the flush fails.
    faults.fail_at(faults.ops() + 1, false);
    assert!(matches!(w.sync(), Err(WalError::Io(_))));
    assert!(matches!(
        w.append(&batch(7, 1, 1, 10)),
        Err(WalError::Poisoned)
    ));
    assert!(matches!(w.sync(), Err(WalError::Poisoned)));
    assert!(matches!(w.release_to(0), Err(WalError::Poisoned)));
    drop(w);
    // What was synced is there after reopening.
    let (_w, r) = Wal::open_in(mem, opts(SMALL)).unwrap();
    assert!(r.entries.len() >= 3);
}

#[test]
#[should_panic(expected = "leaves a gap")]
fn a_gap_panics() {
    let (mut w, _) = Wal::open_in(MemDir::new(), opts(SMALL)).unwrap();
    w.append(&batch(1, 3, 1, 10)).unwrap();
    let _ = w.append(&batch(5, 1, 1, 10));
}

#[test]
#[should_panic(expected = "at or below the snapshot index")]
fn an_entry_under_the_snapshot_panics() {
    let (mut w, _) = Wal::open_in(MemDir::new(), opts(SMALL)).unwrap();
    w.append(&batch(1, 3, 1, 10)).unwrap();
    w.save_snapshot(&SnapshotMetadata {
        index: 2,
        term: 1,
        ..Default::default()
    })
    .unwrap();
    let _ = w.append(&batch(2, 1, 2, 10));
}
