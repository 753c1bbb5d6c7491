//! Property tests of the log against naive models.
//!
//! - [`Unstable`] under random appends (with truncation), accepts,
//!   acknowledgements (stale ones included), snapshot restores: compared with
//!   a model that keeps the whole log in a `Vec` plus two marks (persisted,
//!   in progress).
//! - [`RaftLog`] over [`MemStorage`], driven the way an application drives
//!   it (appends, accept, persist in order, commit, apply, compact, restore):
//!   every read ([`RaftLog::slice`], `term`, `first_index`, `last_index`,
//!   `next_committed_ents`) is compared with the model's `Vec`.

use proptest::prelude::*;
use raft_core::{
    Entry, EntryId, MemStorage, NO_LIMIT, RaftLog, Snapshot, SnapshotMetadata, Storage,
    StorageError, Unstable, entries_size, limit_size,
};

fn entry(term: u64, index: u64, size: u64) -> Entry {
    Entry::new(term, index, vec![index as u8; size as usize])
}

fn snapshot(id: EntryId) -> Snapshot {
    Snapshot {
        data: Default::default(),
        metadata: SnapshotMetadata {
            index: id.index,
            term: id.term,
            ..Default::default()
        },
    }
}

/// Picks a value in `[lo, hi]` from a random selector.
fn pick(sel: u16, lo: u64, hi: u64) -> u64 {
    assert!(lo <= hi);
    lo + u64::from(sel) % (hi - lo + 1)
}

// ---------------------------------------------------------------------------
// Unstable vs a Vec model.

#[derive(Clone, Debug)]
enum UOp {
    /// Append `len` entries at a position picked by `at` in
    /// `[first, last + 1]`; a new term if `bump` or if it truncates.
    Append { at: u16, len: u8, bump: bool },
    /// Accept a Ready.
    Accept,
    /// Acknowledge a write up to an index picked around the log, with the
    /// right term or (if `wrong_term`) another one.
    StableTo { at: u16, wrong_term: bool },
    /// Acknowledge the snapshot at an index picked around it.
    StableSnapTo { at: u16 },
    /// Restore a snapshot at an index picked in `[first - 1, last + 3]`.
    Restore { at: u16 },
}

fn uop() -> impl Strategy<Value = UOp> {
    prop_oneof![
        4 => (any::<u16>(), 1..4u8, any::<bool>()).prop_map(|(at, len, bump)| UOp::Append { at, len, bump }),
        3 => Just(UOp::Accept),
        3 => (any::<u16>(), prop::bool::weighted(0.2)).prop_map(|(at, wrong_term)| UOp::StableTo { at, wrong_term }),
        1 => any::<u16>().prop_map(|at| UOp::StableSnapTo { at }),
        1 => any::<u16>().prop_map(|at| UOp::Restore { at }),
    ]
}

/// The whole log as a `Vec` of terms, and where the persisted and
/// in-progress marks are.
#[derive(Debug)]
struct UModel {
    /// The index before `terms[0]` (the snapshot's, or 0).
    base: u64,
    /// `terms[i]` is the term of the entry at `base + 1 + i`.
    terms: Vec<u64>,
    /// Entries up to here are persisted (not in the unstable log).
    stable: u64,
    /// Entries up to here were handed out. Invariant: `stable <= in_progress`.
    in_progress: u64,
    snap: Option<EntryId>,
    snap_in_progress: bool,
    term: u64,
}

impl UModel {
    fn last(&self) -> u64 {
        self.base + self.terms.len() as u64
    }

    fn term_of(&self, i: u64) -> Option<u64> {
        if i > self.base && i <= self.last() {
            Some(self.terms[(i - self.base - 1) as usize])
        } else {
            self.snap.filter(|s| s.index == i).map(|s| s.term)
        }
    }

    fn unstable_ids(&self, from: u64) -> Vec<EntryId> {
        (from + 1..=self.last())
            .map(|i| EntryId::new(self.term_of(i).unwrap(), i))
            .collect()
    }
}

fn ids(ents: &[Entry]) -> Vec<EntryId> {
    ents.iter().map(Entry::id).collect()
}

fn check_unstable(u: &Unstable, m: &UModel) {
    assert_eq!(u.offset(), m.stable + 1, "offset");
    assert_eq!(
        u.offset_in_progress(),
        m.in_progress + 1,
        "offset_in_progress"
    );
    assert_eq!(ids(u.entries()), m.unstable_ids(m.stable), "entries");
    assert_eq!(
        ids(u.next_entries()),
        m.unstable_ids(m.in_progress),
        "next_entries"
    );
    assert_eq!(u.snapshot().map(Snapshot::id), m.snap, "snapshot");
    assert_eq!(u.snapshot_in_progress(), m.snap_in_progress);
    assert_eq!(
        u.next_snapshot().map(Snapshot::id),
        m.snap.filter(|_| !m.snap_in_progress)
    );
    assert_eq!(u.maybe_first_index(), m.snap.map(|s| s.index + 1));
    let want_last = if m.last() > m.stable {
        Some(m.last())
    } else {
        m.snap.map(|_| m.last())
    };
    assert_eq!(u.maybe_last_index(), want_last, "maybe_last_index");
    for i in m.base.saturating_sub(1)..=m.last() + 1 {
        let want = if i > m.stable && i <= m.last() {
            m.term_of(i)
        } else {
            m.snap.filter(|s| s.index == i).map(|s| s.term)
        };
        assert_eq!(u.maybe_term(i), want, "maybe_term({i})");
    }
    for lo in m.stable + 1..=m.last() + 1 {
        for hi in lo..=m.last() + 1 {
            let want: Vec<EntryId> = (lo..hi)
                .map(|i| EntryId::new(m.term_of(i).unwrap(), i))
                .collect();
            assert_eq!(ids(u.slice(lo, hi)), want, "slice({lo}, {hi})");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn unstable_matches_vec_model(ops in prop::collection::vec(uop(), 1..60)) {
        let mut u = Unstable::new(1);
        let mut m = UModel {
            base: 0,
            terms: vec![],
            stable: 0,
            in_progress: 0,
            snap: None,
            snap_in_progress: false,
            term: 1,
        };
        for op in ops {
            match op {
                UOp::Append { at, len, bump } => {
                    // Never at or below the snapshot: raft only appends above
                    // the commit index, which covers the snapshot.
                    let from = pick(at, m.base + 1, m.last() + 1);
                    if bump || from <= m.last() {
                        m.term += 1;
                    }
                    let new: Vec<Entry> = (from..from + u64::from(len))
                        .map(|i| entry(m.term, i, 0))
                        .collect();
                    u.truncate_and_append(new);
                    m.terms.truncate((from - m.base - 1) as usize);
                    m.terms.extend(std::iter::repeat_n(m.term, len as usize));
                    m.stable = m.stable.min(from - 1);
                    m.in_progress = m.in_progress.min(from - 1);
                }
                UOp::Accept => {
                    u.accept_in_progress();
                    m.in_progress = m.last();
                    m.snap_in_progress = m.snap.is_some();
                }
                UOp::StableTo { at, wrong_term } => {
                    let index = pick(at, m.base.saturating_sub(1), m.last() + 1);
                    let term = m.term_of(index).unwrap_or(m.term) + u64::from(wrong_term);
                    u.stable_to(EntryId::new(term, index));
                    if index > m.stable && index <= m.last() && m.term_of(index) == Some(term) {
                        m.stable = index;
                        m.in_progress = m.in_progress.max(index);
                    }
                }
                UOp::StableSnapTo { at } => {
                    let index = pick(at, m.base.saturating_sub(1), m.base + 1);
                    u.stable_snap_to(index);
                    if m.snap.is_some_and(|s| s.index == index) {
                        m.snap = None;
                        m.snap_in_progress = false;
                    }
                }
                UOp::Restore { at } => {
                    let index = pick(at, m.base.saturating_sub(1).max(1), m.last() + 3);
                    m.term += 1;
                    let id = EntryId::new(m.term, index);
                    u.restore(snapshot(id));
                    m.base = index;
                    m.terms.clear();
                    m.stable = index;
                    m.in_progress = index;
                    m.snap = Some(id);
                    m.snap_in_progress = false;
                }
            }
            check_unstable(&u, &m);
        }
    }
}

// ---------------------------------------------------------------------------
// RaftLog over MemStorage vs a Vec model.

#[derive(Clone, Debug)]
enum LOp {
    /// Append `len` entries of picked sizes at a position picked in
    /// `[committed + 1, last + 1]` (a new term if it truncates or `bump`).
    Append {
        at: u16,
        len: u8,
        bump: bool,
        size: u8,
    },
    /// Accept a Ready: queue its snapshot and entries as one write.
    Accept,
    /// The oldest queued write completes.
    Persist,
    /// Commit up to a picked index in `[committed, last]`.
    Commit { at: u16 },
    /// Hand out committed entries (accept_applying); apply them now or later.
    Apply { allow_unstable: bool, defer: bool },
    /// The oldest handed-out batch is applied.
    Applied,
    /// The application compacts storage up to a picked applied index.
    Compact { at: u16 },
    /// A snapshot from a leader, ahead of the commit index.
    Restore { ahead: u8 },
    /// Reads a slice and compares.
    Slice { lo: u16, hi: u16, max: u16 },
}

fn lop() -> impl Strategy<Value = LOp> {
    prop_oneof![
        5 => (any::<u16>(), 1..5u8, prop::bool::weighted(0.2), any::<u8>())
            .prop_map(|(at, len, bump, size)| LOp::Append { at, len, bump, size }),
        3 => Just(LOp::Accept),
        3 => Just(LOp::Persist),
        2 => any::<u16>().prop_map(|at| LOp::Commit { at }),
        2 => (any::<bool>(), any::<bool>()).prop_map(|(allow_unstable, defer)| LOp::Apply { allow_unstable, defer }),
        1 => Just(LOp::Applied),
        1 => any::<u16>().prop_map(|at| LOp::Compact { at }),
        1 => any::<u8>().prop_map(|ahead| LOp::Restore { ahead }),
        3 => (any::<u16>(), any::<u16>(), any::<u16>()).prop_map(|(lo, hi, max)| LOp::Slice { lo, hi, max }),
    ]
}

/// What a completed Ready write holds.
#[derive(Debug)]
struct Write {
    snapshot: Option<Snapshot>,
    entries: Vec<Entry>,
}

#[derive(Debug)]
struct LModel {
    /// The log: `log[i]` has index `i + 1`. Compacted entries are kept (the
    /// model still knows them); `None` stands for the indexes below a
    /// restored snapshot, which the node never had.
    log: Vec<Option<Entry>>,
    /// The expected first index (after compactions and snapshots).
    first: u64,
    term: u64,
    /// Accepted Ready writes not yet completed, oldest first.
    writes: std::collections::VecDeque<Write>,
    /// Committed entries handed out and not yet applied: (last index, size).
    applies: std::collections::VecDeque<(u64, u64)>,
    max_applying: u64,
    /// The size handed out to apply and not yet acknowledged.
    applying_size: u64,
    /// Whether handing out committed entries should be paused.
    paused: bool,
}

/// `applied_to`, and the model's bookkeeping of it.
fn applied(log: &mut RaftLog<MemStorage>, m: &mut LModel, index: u64, size: u64) {
    log.applied_to(index, size);
    m.applying_size = m.applying_size.saturating_sub(size);
    m.paused = m.applying_size >= m.max_applying;
}

fn expected_slice(m: &LModel, lo: u64, hi: u64, max: u64) -> Vec<Entry> {
    let mut ents: Vec<Entry> = (lo..hi)
        .map(|i| m.log[(i - 1) as usize].clone().expect("known entry"))
        .collect();
    limit_size(&mut ents, max);
    ents
}

fn check_log(log: &RaftLog<MemStorage>, m: &LModel) {
    let last = m.log.len() as u64;
    assert_eq!(log.last_index(), last, "last_index");
    assert_eq!(log.first_index(), m.first, "first_index");
    assert!(log.applied() <= log.applying());
    assert!(log.applying() <= log.committed());
    assert!(log.committed() <= last);
    assert!(m.first - 1 <= log.committed());
    // From first_index - 1 (whose term is kept for matching) to the end.
    for i in m.first - 1..=last {
        let want = if i == 0 {
            0
        } else {
            m.log[(i - 1) as usize].as_ref().unwrap().term
        };
        assert_eq!(log.term(i), Ok(want), "term({i})");
    }
    if m.first >= 2 {
        assert_eq!(log.term(m.first - 2), Err(StorageError::Compacted));
    }
    assert_eq!(log.term(last + 1), Err(StorageError::Unavailable));
    assert_eq!(
        log.all_entries(),
        expected_slice(m, m.first, last + 1, NO_LIMIT)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn raft_log_matches_vec_model(
        ops in prop::collection::vec(lop(), 1..80),
        max_applying in prop_oneof![Just(NO_LIMIT), 16..400u64],
    ) {
        let mut log = RaftLog::new(MemStorage::new(), max_applying).unwrap();
        let mut m = LModel {
            log: vec![],
            first: 1,
            term: 1,
            writes: Default::default(),
            applies: Default::default(),
            max_applying,
            applying_size: 0,
            paused: false,
        };
        for op in ops {
            let last = m.log.len() as u64;
            match op {
                LOp::Append { at, len, bump, size } => {
                    let from = pick(at, log.committed() + 1, last + 1);
                    if bump || from <= last {
                        m.term += 1;
                    }
                    let new: Vec<Entry> = (from..from + u64::from(len))
                        .map(|i| entry(m.term, i, u64::from(size) % 64))
                        .collect();
                    m.log.truncate((from - 1) as usize);
                    m.log.extend(new.iter().cloned().map(Some));
                    assert_eq!(log.append(new), m.log.len() as u64);
                }
                LOp::Accept => {
                    let write = Write {
                        snapshot: log.next_unstable_snapshot().cloned(),
                        entries: log.next_unstable_ents().to_vec(),
                    };
                    log.accept_unstable();
                    assert!(!log.has_next_unstable_ents());
                    assert!(!log.has_next_unstable_snapshot());
                    if write.snapshot.is_some() || !write.entries.is_empty() {
                        m.writes.push_back(write);
                    }
                }
                LOp::Persist => {
                    if let Some(w) = m.writes.pop_front() {
                        // The snapshot first, then the entries after it.
                        if let Some(s) = w.snapshot {
                            let index = s.metadata.index;
                            // Applying finishes before a snapshot is applied.
                            while let Some((i, size)) = m.applies.pop_front() {
                                applied(&mut log, &mut m, i, size);
                            }
                            log.store_mut().apply_snapshot(s).unwrap();
                            log.stable_snap_to(index);
                            applied(&mut log, &mut m, index, 0);
                        }
                        if let Some(e) = w.entries.last() {
                            let id = e.id();
                            log.store_mut().append(&w.entries).unwrap();
                            log.stable_to(id);
                        }
                    }
                }
                LOp::Commit { at } => {
                    let to = pick(at, log.committed(), last);
                    log.commit_to(to);
                    prop_assert_eq!(log.committed(), to);
                }
                LOp::Apply { allow_unstable, defer } => {
                    // Only committed entries, and without allow_unstable
                    // only persisted ones (below the unstable offset).
                    let max_appliable = if allow_unstable {
                        log.committed()
                    } else {
                        log.committed().min(log.unstable().offset() - 1)
                    };
                    prop_assert_eq!(log.max_appliable_index(allow_unstable), max_appliable);
                    let has = log.has_next_committed_ents(allow_unstable);
                    let ents = log.next_committed_ents(allow_unstable);
                    prop_assert_eq!(has, !ents.is_empty());
                    prop_assert_eq!(
                        has,
                        !m.paused
                            && !log.has_next_or_in_progress_snapshot()
                            && log.applying() < max_appliable
                    );
                    if let Some(e) = ents.last() {
                        let lo = log.applying() + 1;
                        prop_assert_eq!(ents[0].index, lo);
                        prop_assert!(e.index <= max_appliable);
                        // All the appliable entries, or cut by the size
                        // limit (at least one entry).
                        let hi = max_appliable + 1;
                        let room = max_applying - m.applying_size;
                        prop_assert_eq!(&ents, &expected_slice(&m, lo, hi, room));
                        let size = entries_size(&ents);
                        let index = e.index;
                        log.accept_applying(index, size, allow_unstable);
                        m.applying_size += size;
                        m.paused = m.applying_size >= max_applying || index < max_appliable;
                        m.applies.push_back((index, size));
                        if !defer {
                            while let Some((i, s)) = m.applies.pop_front() {
                                applied(&mut log, &mut m, i, s);
                            }
                        }
                    }
                }
                LOp::Applied => {
                    if let Some((i, size)) = m.applies.pop_front() {
                        applied(&mut log, &mut m, i, size);
                    }
                }
                LOp::Compact { at } => {
                    // Only applied entries that raft reads from storage
                    // (below the unstable offset), and not while a snapshot
                    // is being installed.
                    let store_first = log.store().first_index().unwrap();
                    let bound = log
                        .applied()
                        .min(log.unstable().offset() - 1)
                        .min(log.store().last_index().unwrap());
                    if !log.has_next_or_in_progress_snapshot() && bound >= store_first {
                        let i = pick(at, store_first, bound);
                        log.store_mut().compact(i).unwrap();
                        m.first = i + 1;
                    }
                }
                LOp::Restore { ahead } => {
                    let index = log.committed() + 1 + u64::from(ahead) % 8;
                    m.term += 1;
                    let id = EntryId::new(m.term, index);
                    log.restore(snapshot(id));
                    // Only the snapshot's last entry id is known.
                    m.log = vec![None; (index - 1) as usize];
                    m.log.push(Some(entry(m.term, index, 0)));
                    m.first = index + 1;
                }
                LOp::Slice { lo, hi, max } => {
                    let lo = pick(lo, m.first.saturating_sub(2).max(1), last + 1);
                    let hi = pick(hi, lo, last + 1);
                    let max = if max % 8 == 0 { NO_LIMIT } else { u64::from(max % 400) };
                    let got = log.slice(lo, hi, max);
                    if lo < m.first {
                        prop_assert_eq!(got, Err(StorageError::Compacted));
                    } else {
                        prop_assert_eq!(got.unwrap(), expected_slice(&m, lo, hi, max));
                    }
                }
            }
            check_log(&log, &m);
        }
    }
}
