//! The [`Storage`] trait through which raft reads what the application has
//! persisted, and [`MemStorage`], an in-memory implementation.

use bytes::Bytes;

use crate::error::StorageError;
use crate::raft_log::limit_len;
use crate::types::{ConfState, Entry, EntryType, HardState, Snapshot, SnapshotMetadata};

/// The state raft restarts from: the persisted hard state and membership.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RaftState {
    /// The persisted hard state.
    pub hard_state: HardState,
    /// The membership as of the last applied configuration change (or the
    /// snapshot's, if none applied since).
    pub conf_state: ConfState,
}

/// The result type of [`Storage`] methods.
pub type StorageResult<T> = std::result::Result<T, StorageError>;

/// What raft reads from the application's stable storage.
///
/// The log in storage is the contiguous range of entries
/// `[first_index(), last_index()]`, preceded by a snapshot (or the empty
/// snapshot at index 0) whose index is `first_index() - 1` and whose term
/// `term(first_index() - 1)` returns.
///
/// raft never writes to storage: the application appends the entries and
/// hard state of each Ready to its stable storage, and this trait reads them
/// back. If any method returns an error, the raft node becomes inoperable
/// and refuses to take part in elections; the application is responsible
/// for cleanup and recovery.
pub trait Storage {
    /// The saved hard state and conf state, called once when raft starts.
    ///
    /// # Errors
    /// Any failure of the underlying store.
    fn initial_state(&self) -> StorageResult<RaftState>;

    /// The entries in `[lo, hi)`, limited to `max_size` bytes counted by
    /// [`Entry::size`] (but at least one entry if any is in range).
    ///
    /// # Errors
    /// [`StorageError::Compacted`] if `lo <= ` the snapshot index,
    /// [`StorageError::Unavailable`] if `hi > last_index() + 1`.
    fn entries(&self, lo: u64, hi: u64, max_size: u64) -> StorageResult<Vec<Entry>>;

    /// The term of the entry at `index`, which must be in
    /// `[first_index() - 1, last_index()]`.
    ///
    /// # Errors
    /// [`StorageError::Compacted`] below that range,
    /// [`StorageError::Unavailable`] above it.
    fn term(&self, index: u64) -> StorageResult<u64>;

    /// The index of the first entry still available (the snapshot index + 1).
    ///
    /// # Errors
    /// Any failure of the underlying store.
    fn first_index(&self) -> StorageResult<u64>;

    /// The index of the last entry in storage (the snapshot index if none).
    ///
    /// # Errors
    /// Any failure of the underlying store.
    fn last_index(&self) -> StorageResult<u64>;

    /// The most recent snapshot. `request_index` is the lowest index the
    /// snapshot must cover, `to` the node it is meant for.
    ///
    /// # Errors
    /// [`StorageError::SnapshotTemporarilyUnavailable`] if a snapshot is being
    /// built; raft will ask again later.
    fn snapshot(&self, request_index: u64, to: u64) -> StorageResult<Snapshot>;
}

/// An in-memory [`Storage`] (etcd's `MemoryStorage`), for tests, examples
/// and applications that keep their log in memory.
///
/// It has no locks: raft owns its storage, and the application reaches it
/// through `&mut` (`RawNode::store_mut()`) to persist each Ready's entries,
/// hard state and snapshot, and to compact the log.
///
/// Layout: `entries[0]` is a dummy entry standing for the last compacted
/// entry (index and term kept, payload dropped), followed by the log
/// entries. So `entries[i]` has index `entries[0].index + i`, the first
/// available index is `entries[0].index + 1`, and the term of the entry
/// before it is always known (raft needs it to match appends right after a
/// compaction). A fresh storage's dummy is index 0, term 0; after
/// [`MemStorage::apply_snapshot`] it is the snapshot's last entry. The
/// application normally compacts up to a snapshot it created, so the dummy
/// and the snapshot coincide, but nothing enforces it (as in etcd).
#[derive(Clone, Debug)]
pub struct MemStorage {
    hard_state: HardState,
    /// The membership returned by `initial_state`. Use: set by bootstrap,
    /// [`MemStorage::set_conf_state`] and [`MemStorage::apply_snapshot`].
    conf_state: ConfState,
    /// The latest snapshot (created or applied).
    snapshot: Snapshot,
    /// Invariant: non-empty; `entries[i].index == entries[0].index + i`.
    entries: Vec<Entry>,
    /// Test hook: when set, `snapshot()` fails with
    /// `SnapshotTemporarilyUnavailable`.
    snapshot_unavailable: bool,
}

impl Default for MemStorage {
    fn default() -> Self {
        Self::new()
    }
}

impl MemStorage {
    /// An empty storage: no entries, the empty snapshot at index 0 (with an
    /// empty membership), and the empty hard state.
    pub fn new() -> Self {
        MemStorage {
            hard_state: HardState::default(),
            conf_state: ConfState::default(),
            snapshot: Snapshot::default(),
            entries: vec![Entry::default()],
            snapshot_unavailable: false,
        }
    }

    /// An empty storage for bootstrapping a new cluster with membership
    /// `conf_state`: the snapshot at index 0 (term 0) carries it, and
    /// [`Storage::initial_state`] returns it, so a node started on this
    /// storage knows its peers before any entry exists.
    ///
    /// Every node of a new cluster must be bootstrapped with the same
    /// membership (the same index-0 snapshot). This follows raft-rs's
    /// `MemStorage::new_with_conf_state`. etcd's `Bootstrap` instead writes
    /// one committed `ConfChange` entry per peer at term 1; the snapshot form
    /// keeps the log empty, so the first leader's entries start at index 1.
    ///
    /// A cluster bootstrapped this way cannot safely add nodes while its
    /// leader still has entry 1: a node added later starts from
    /// [`MemStorage::new`], matches the leader's log at index 0 (term 0
    /// matches anywhere), and replays the log from index 1, applying every
    /// membership change to an empty membership instead of this one. Its
    /// configuration then differs from its peers' (a node whose own addition
    /// as a voter is the first change it replays believes it is alone and
    /// elects itself; see `testdata/confchange_join_from_log_hazard.txt`). A cluster that will grow should bootstrap at index 1
    /// instead, so that new nodes must catch up by snapshot, as raft-rs's
    /// examples do:
    /// [`MemStorage::apply_snapshot`] of a snapshot at index 1, term 1 with
    /// the membership, and [`MemStorage::set_hard_state`] with term 1,
    /// commit 1. (The leader then sends the newest snapshot there is, so one
    /// must also be taken after the node's addition: a node refuses a
    /// snapshot whose membership does not include it.)
    pub fn new_with_conf_state(conf_state: ConfState) -> Self {
        let mut s = Self::new();
        s.snapshot.metadata.conf_state = conf_state.clone();
        s.conf_state = conf_state;
        s
    }

    /// Saves the hard state (term, vote, commit) of a Ready.
    pub fn set_hard_state(&mut self, hard_state: HardState) {
        self.hard_state = hard_state;
    }

    /// The saved hard state.
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// Saves the membership [`Storage::initial_state`] returns; call it with
    /// the result of `apply_conf_change` after applying a configuration
    /// change entry.
    pub fn set_conf_state(&mut self, conf_state: ConfState) {
        self.conf_state = conf_state;
    }

    /// The membership [`Storage::initial_state`] returns.
    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// Replaces the whole content with `snapshot` (one received from a
    /// leader): every entry is dropped, the log now starts right after the
    /// snapshot, and its membership becomes the current one.
    ///
    /// # Errors
    /// [`StorageError::SnapshotOutOfDate`] if `snapshot` is not newer than
    /// the current snapshot.
    pub fn apply_snapshot(&mut self, snapshot: Snapshot) -> StorageResult<()> {
        if snapshot.metadata.index <= self.snapshot.metadata.index {
            return Err(StorageError::SnapshotOutOfDate);
        }
        self.entries.clear();
        self.entries.push(Entry::new(
            snapshot.metadata.term,
            snapshot.metadata.index,
            Bytes::new(),
        ));
        self.conf_state = snapshot.metadata.conf_state.clone();
        self.snapshot = snapshot;
        Ok(())
    }

    /// Records a snapshot of the application state as of index `i` (which
    /// must be applied) and returns it. `conf_state` is the membership as of
    /// `i`; `None` takes the current one ([`MemStorage::conf_state`]), which
    /// is only right if no configuration change after `i` has been applied.
    ///
    /// Entries are not dropped: call [`MemStorage::compact`] for that, and
    /// keep some entries after the snapshot if slow followers should catch
    /// up from the log rather than from the snapshot.
    ///
    /// # Errors
    /// [`StorageError::SnapshotOutOfDate`] if `i` is not above the current
    /// snapshot's index; [`StorageError::Compacted`] if the entry at `i` was
    /// compacted (its term is no longer known).
    ///
    /// # Panics
    /// If `i` is beyond the last index.
    pub fn create_snapshot(
        &mut self,
        i: u64,
        conf_state: Option<ConfState>,
        data: impl Into<Bytes>,
    ) -> StorageResult<Snapshot> {
        if i <= self.snapshot.metadata.index {
            return Err(StorageError::SnapshotOutOfDate);
        }
        let last = self.last();
        assert!(i <= last, "snapshot {i} is out of bound last index {last}");
        let term = self.term(i)?;
        self.snapshot = Snapshot {
            data: data.into(),
            metadata: SnapshotMetadata {
                conf_state: conf_state.unwrap_or_else(|| self.conf_state.clone()),
                index: i,
                term,
            },
        };
        Ok(self.snapshot.clone())
    }

    /// Discards the entries up to and including `compact_index`, which
    /// becomes the dummy entry (its term is kept for matching). The
    /// application should only compact entries covered by a snapshot it
    /// created; raft then sends that snapshot to followers that need a
    /// discarded entry.
    ///
    /// # Errors
    /// [`StorageError::Compacted`] if `compact_index` is already compacted
    /// (`<= first_index() - 1`).
    ///
    /// # Panics
    /// If `compact_index` is beyond the last index.
    pub fn compact(&mut self, compact_index: u64) -> StorageResult<()> {
        let offset = self.offset();
        if compact_index <= offset {
            return Err(StorageError::Compacted);
        }
        let last = self.last();
        assert!(
            compact_index <= last,
            "compact {compact_index} is out of bound last index {last}"
        );
        self.entries.drain(..(compact_index - offset) as usize);
        let dummy = &mut self.entries[0];
        dummy.data = Bytes::new();
        dummy.entry_type = EntryType::Normal;
        Ok(())
    }

    /// Persists `entries` (contiguous, as handed out by a Ready): entries
    /// already in storage from `entries[0].index` on are replaced, and
    /// entries below the first index (already compacted) are skipped.
    ///
    /// # Errors
    /// None today; the `Result` leaves room for stores that can fail.
    ///
    /// # Panics
    /// If `entries` would leave a gap after the last index.
    pub fn append(&mut self, entries: &[Entry]) -> StorageResult<()> {
        if let Some(skip) = self.truncate_for_append(entries) {
            self.entries.extend_from_slice(&entries[skip..]);
        }
        Ok(())
    }

    /// [`MemStorage::append`] taking the entries by value (from
    /// [`Ready::take_entries`](crate::Ready::take_entries)), which moves them
    /// in instead of cloning each one.
    ///
    /// # Errors
    /// None today; the `Result` leaves room for stores that can fail.
    ///
    /// # Panics
    /// If `entries` would leave a gap after the last index.
    pub fn append_owned(&mut self, mut entries: Vec<Entry>) -> StorageResult<()> {
        match self.truncate_for_append(&entries) {
            Some(0) => self.entries.append(&mut entries),
            Some(skip) => self.entries.extend(entries.drain(skip..)),
            None => {}
        }
        Ok(())
    }

    /// Makes room for appending `entries`: truncates the stored log where
    /// they start, and returns how many of them (already compacted) to skip,
    /// or None if there is nothing to append.
    fn truncate_for_append(&mut self, entries: &[Entry]) -> Option<usize> {
        let head = entries.first()?;
        let first = self.offset() + 1;
        let last_new = head.index + entries.len() as u64 - 1;
        if last_new < first {
            return None;
        }
        let skip = first.saturating_sub(head.index) as usize;
        let at = (entries[skip].index - self.offset()) as usize;
        assert!(
            at <= self.entries.len(),
            "missing log entry [last: {}, append at: {}]",
            self.last(),
            entries[skip].index
        );
        self.entries.truncate(at);
        Some(skip)
    }

    /// Test hook: while `unavailable` is true, [`Storage::snapshot`] fails
    /// with [`StorageError::SnapshotTemporarilyUnavailable`], as a store
    /// still building a snapshot would. Off by default.
    pub fn set_snapshot_unavailable(&mut self, unavailable: bool) {
        self.snapshot_unavailable = unavailable;
    }

    /// The snapshot index: the index of the dummy entry.
    fn offset(&self) -> u64 {
        self.entries[0].index
    }

    fn last(&self) -> u64 {
        self.offset() + self.entries.len() as u64 - 1
    }
}

impl Storage for MemStorage {
    /// The saved hard state, and the current membership (the bootstrap
    /// membership, the last one set with [`MemStorage::set_conf_state`], or
    /// the last applied snapshot's, whichever came last).
    fn initial_state(&self) -> StorageResult<RaftState> {
        Ok(RaftState {
            hard_state: self.hard_state,
            conf_state: self.conf_state.clone(),
        })
    }

    /// The entries in `[lo, hi)`, limited to `max_size` bytes but at least
    /// one entry if the range is not empty.
    ///
    /// # Panics
    /// If `lo > hi`.
    fn entries(&self, lo: u64, hi: u64, max_size: u64) -> StorageResult<Vec<Entry>> {
        assert!(lo <= hi, "invalid range [{lo}, {hi})");
        let offset = self.offset();
        if lo <= offset {
            return Err(StorageError::Compacted);
        }
        if hi > self.last() + 1 {
            return Err(StorageError::Unavailable);
        }
        let range = &self.entries[(lo - offset) as usize..(hi - offset) as usize];
        // Count the prefix first, so that only the entries returned are
        // cloned.
        Ok(range[..limit_len(range, max_size)].to_vec())
    }

    fn term(&self, index: u64) -> StorageResult<u64> {
        let offset = self.offset();
        if index < offset {
            return Err(StorageError::Compacted);
        }
        self.entries
            .get((index - offset) as usize)
            .map(|e| e.term)
            .ok_or(StorageError::Unavailable)
    }

    fn first_index(&self) -> StorageResult<u64> {
        Ok(self.offset() + 1)
    }

    fn last_index(&self) -> StorageResult<u64> {
        Ok(self.last())
    }

    /// The current snapshot, whatever `request_index` and `to` (raft sends a
    /// follower the newest snapshot there is).
    ///
    /// # Errors
    /// [`StorageError::SnapshotTemporarilyUnavailable`] while the test hook
    /// [`MemStorage::set_snapshot_unavailable`] is on.
    fn snapshot(&self, _request_index: u64, _to: u64) -> StorageResult<Snapshot> {
        if self.snapshot_unavailable {
            return Err(StorageError::SnapshotTemporarilyUnavailable);
        }
        Ok(self.snapshot.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft_log::NO_LIMIT;

    fn ent(term: u64, index: u64) -> Entry {
        Entry::new(term, index, Vec::new())
    }

    /// A storage whose dummy entry is (3, 3), holding entries 4 and 5 with
    /// terms 4 and 5 (etcd's storage tests use this shape).
    fn storage_3_to_5() -> MemStorage {
        let mut s = MemStorage::new();
        s.entries = vec![ent(3, 3), ent(4, 4), ent(5, 5)];
        s
    }

    fn terms_and_indexes(s: &MemStorage) -> Vec<(u64, u64)> {
        s.entries.iter().map(|e| (e.term, e.index)).collect()
    }

    #[test]
    fn new_is_empty() {
        let s = MemStorage::new();
        assert_eq!(s.first_index(), Ok(1));
        assert_eq!(s.last_index(), Ok(0));
        assert_eq!(s.term(0), Ok(0));
        assert_eq!(s.term(1), Err(StorageError::Unavailable));
        assert_eq!(s.entries(1, 1, NO_LIMIT), Ok(vec![]));
        assert_eq!(s.initial_state(), Ok(RaftState::default()));
        assert_eq!(s.snapshot(0, 0), Ok(Snapshot::default()));
    }

    #[test]
    fn bootstrap_with_conf_state() {
        let cs = ConfState::with_voters([1, 2, 3]);
        let s = MemStorage::new_with_conf_state(cs.clone());
        let state = s.initial_state().unwrap();
        assert_eq!(state.conf_state, cs);
        assert!(state.hard_state.is_empty());
        let snap = s.snapshot(0, 0).unwrap();
        assert_eq!(snap.metadata.index, 0);
        assert_eq!(snap.metadata.term, 0);
        assert_eq!(snap.metadata.conf_state, cs);
        assert_eq!(s.first_index(), Ok(1));
        assert_eq!(s.last_index(), Ok(0));
    }

    #[test]
    fn hard_state_and_conf_state() {
        let mut s = MemStorage::new();
        let hs = HardState {
            term: 3,
            vote: 2,
            commit: 7,
        };
        s.set_hard_state(hs);
        assert_eq!(s.hard_state(), hs);
        s.set_conf_state(ConfState::with_voters([4]));
        let state = s.initial_state().unwrap();
        assert_eq!(state.hard_state, hs);
        assert_eq!(state.conf_state, ConfState::with_voters([4]));
        assert_eq!(s.conf_state(), &ConfState::with_voters([4]));
    }

    #[test]
    fn term() {
        let s = storage_3_to_5();
        assert_eq!(s.term(2), Err(StorageError::Compacted));
        assert_eq!(s.term(3), Ok(3));
        assert_eq!(s.term(4), Ok(4));
        assert_eq!(s.term(5), Ok(5));
        assert_eq!(s.term(6), Err(StorageError::Unavailable));
    }

    #[test]
    fn entries() {
        let mut s = MemStorage::new();
        s.entries = vec![ent(3, 3), ent(4, 4), ent(5, 5), ent(6, 6)];
        let size = |n: u64| n * crate::ENTRY_OVERHEAD;
        // (lo, hi, max_size, expected)
        let cases: Vec<(u64, u64, u64, StorageResult<Vec<Entry>>)> = vec![
            (2, 6, NO_LIMIT, Err(StorageError::Compacted)),
            (3, 4, NO_LIMIT, Err(StorageError::Compacted)),
            (4, 5, NO_LIMIT, Ok(vec![ent(4, 4)])),
            (4, 6, NO_LIMIT, Ok(vec![ent(4, 4), ent(5, 5)])),
            (4, 7, NO_LIMIT, Ok(vec![ent(4, 4), ent(5, 5), ent(6, 6)])),
            (4, 8, NO_LIMIT, Err(StorageError::Unavailable)),
            (7, 7, NO_LIMIT, Ok(vec![])),
            // At least one entry, even with a zero limit.
            (4, 7, 0, Ok(vec![ent(4, 4)])),
            (4, 7, size(2) - 1, Ok(vec![ent(4, 4)])),
            (4, 7, size(2), Ok(vec![ent(4, 4), ent(5, 5)])),
            (4, 7, size(3) - 1, Ok(vec![ent(4, 4), ent(5, 5)])),
            (4, 7, size(3), Ok(vec![ent(4, 4), ent(5, 5), ent(6, 6)])),
        ];
        for (lo, hi, max, want) in cases {
            assert_eq!(s.entries(lo, hi, max), want, "entries({lo}, {hi}, {max})");
        }
    }

    #[test]
    fn first_and_last_index() {
        let mut s = storage_3_to_5();
        assert_eq!(s.first_index(), Ok(4));
        assert_eq!(s.last_index(), Ok(5));
        s.append(&[ent(5, 6)]).unwrap();
        assert_eq!(s.last_index(), Ok(6));
        s.compact(4).unwrap();
        assert_eq!(s.first_index(), Ok(5));
        assert_eq!(s.last_index(), Ok(6));
    }

    #[test]
    fn compact() {
        // (compact index, expected result, expected dummy (term, index),
        // expected remaining length incl. dummy)
        let cases = [
            (2, Err(StorageError::Compacted), (3, 3), 3),
            (3, Err(StorageError::Compacted), (3, 3), 3),
            (4, Ok(()), (4, 4), 2),
            (5, Ok(()), (5, 5), 1),
        ];
        for (i, want, dummy, len) in cases {
            let mut s = storage_3_to_5();
            s.entries[2].data = Bytes::from_static(b"payload");
            assert_eq!(s.compact(i), want, "compact({i})");
            assert_eq!((s.entries[0].term, s.entries[0].index), dummy);
            assert_eq!(s.entries.len(), len);
            assert!(
                i < 5 || s.entries[0].data.is_empty(),
                "the dummy keeps no payload"
            );
        }
    }

    #[test]
    #[should_panic(expected = "compact 6 is out of bound last index 5")]
    fn compact_panics_beyond_last_index() {
        storage_3_to_5().compact(6).unwrap();
    }

    #[test]
    fn create_snapshot() {
        let cs = ConfState::with_voters([1, 2, 3]);
        let mut s = storage_3_to_5();
        s.set_conf_state(ConfState::with_voters([9]));
        let snap = s
            .create_snapshot(4, Some(cs.clone()), Bytes::from_static(b"data"))
            .unwrap();
        assert_eq!(snap.metadata.index, 4);
        assert_eq!(snap.metadata.term, 4);
        assert_eq!(snap.metadata.conf_state, cs);
        assert_eq!(&snap.data[..], b"data");
        assert_eq!(s.snapshot(0, 0), Ok(snap));
        // Entries are kept until compacted.
        assert_eq!(s.first_index(), Ok(4));

        assert_eq!(
            s.create_snapshot(4, None, Bytes::new()),
            Err(StorageError::SnapshotOutOfDate)
        );
        let snap = s.create_snapshot(5, None, &b"more"[..]).unwrap();
        assert_eq!(snap.metadata.index, 5);
        assert_eq!(snap.metadata.term, 5);
        assert_eq!(
            snap.metadata.conf_state,
            ConfState::with_voters([9]),
            "None takes the current membership"
        );
    }

    #[test]
    fn create_snapshot_of_a_compacted_index() {
        let mut s = storage_3_to_5();
        s.compact(5).unwrap();
        // The snapshot is still at 0: index 4 is newer, but its term is gone.
        assert_eq!(
            s.create_snapshot(4, None, Bytes::new()),
            Err(StorageError::Compacted)
        );
        assert_eq!(
            s.create_snapshot(5, None, Bytes::new())
                .unwrap()
                .metadata
                .term,
            5
        );
    }

    #[test]
    #[should_panic(expected = "snapshot 6 is out of bound last index 5")]
    fn create_snapshot_panics_beyond_last_index() {
        let _ = storage_3_to_5().create_snapshot(6, None, Bytes::new());
    }

    #[test]
    fn apply_snapshot() {
        let cs = ConfState::with_voters([1, 2, 3]);
        let snap = |index, term| Snapshot {
            data: Bytes::from_static(b"data"),
            metadata: SnapshotMetadata {
                conf_state: cs.clone(),
                index,
                term,
            },
        };
        let mut s = MemStorage::new();
        s.append(&[ent(1, 1), ent(1, 2)]).unwrap();
        assert_eq!(s.apply_snapshot(snap(4, 4)), Ok(()));
        assert_eq!(s.first_index(), Ok(5));
        assert_eq!(s.last_index(), Ok(4));
        assert_eq!(s.term(4), Ok(4));
        assert_eq!(s.term(2), Err(StorageError::Compacted));
        assert_eq!(s.initial_state().unwrap().conf_state, cs);
        assert_eq!(s.snapshot(0, 0), Ok(snap(4, 4)));
        // Older or equal: refused, nothing changes.
        assert_eq!(
            s.apply_snapshot(snap(3, 3)),
            Err(StorageError::SnapshotOutOfDate)
        );
        assert_eq!(
            s.apply_snapshot(snap(4, 4)),
            Err(StorageError::SnapshotOutOfDate)
        );
        assert_eq!(s.first_index(), Ok(5));
        // Entries follow the snapshot.
        s.append(&[ent(4, 5)]).unwrap();
        assert_eq!(s.last_index(), Ok(5));
    }

    #[test]
    fn append() {
        // (entries, expected result (term, index) incl. the dummy)
        type TermsAndIndexes = Vec<(u64, u64)>;
        let cases: Vec<(Vec<Entry>, TermsAndIndexes)> = vec![
            (vec![], vec![(3, 3), (4, 4), (5, 5)]),
            // Already there: unchanged.
            (
                vec![ent(3, 3), ent(4, 4), ent(5, 5)],
                vec![(3, 3), (4, 4), (5, 5)],
            ),
            // Conflicting suffix replaced.
            (
                vec![ent(3, 3), ent(6, 4), ent(6, 5)],
                vec![(3, 3), (6, 4), (6, 5)],
            ),
            (
                vec![ent(3, 3), ent(4, 4), ent(5, 5), ent(5, 6)],
                vec![(3, 3), (4, 4), (5, 5), (5, 6)],
            ),
            // Starting below the first index: the compacted part is skipped.
            (vec![ent(2, 2), ent(3, 3), ent(5, 4)], vec![(3, 3), (5, 4)]),
            // Entirely compacted: ignored.
            (vec![ent(1, 1), ent(2, 2)], vec![(3, 3), (4, 4), (5, 5)]),
            // Truncate from 4 and replace.
            (vec![ent(5, 4)], vec![(3, 3), (5, 4)]),
            // Truncate from 5 and replace.
            (vec![ent(5, 5)], vec![(3, 3), (4, 4), (5, 5)]),
            (vec![ent(6, 5)], vec![(3, 3), (4, 4), (6, 5)]),
            // Right after the last entry.
            (vec![ent(5, 6)], vec![(3, 3), (4, 4), (5, 5), (5, 6)]),
        ];
        for (i, (to_append, want)) in cases.into_iter().enumerate() {
            let mut s = storage_3_to_5();
            s.append(&to_append).unwrap();
            assert_eq!(terms_and_indexes(&s), want, "case {i}");
            let mut s = storage_3_to_5();
            s.append_owned(to_append).unwrap();
            assert_eq!(terms_and_indexes(&s), want, "case {i}, owned");
        }
    }

    #[test]
    #[should_panic(expected = "missing log entry [last: 5, append at: 7]")]
    fn append_panics_on_gap() {
        storage_3_to_5().append(&[ent(5, 7)]).unwrap();
    }

    #[test]
    #[should_panic(expected = "missing log entry [last: 5, append at: 7]")]
    fn append_owned_panics_on_gap() {
        storage_3_to_5().append_owned(vec![ent(5, 7)]).unwrap();
    }

    #[test]
    fn snapshot_unavailable_test_hook() {
        let mut s = MemStorage::new();
        s.set_snapshot_unavailable(true);
        assert_eq!(
            s.snapshot(5, 2),
            Err(StorageError::SnapshotTemporarilyUnavailable)
        );
        s.set_snapshot_unavailable(false);
        assert!(s.snapshot(5, 2).is_ok());
    }
}
