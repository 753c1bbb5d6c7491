//! [`RaftLog`]: a node's view of the raft log, stitched from what the
//! application has persisted ([`Storage`]) and what it has not yet
//! ([`Unstable`]), with the commit and apply positions (etcd's `log.go`).
//!
//! ```text
//!            snapshot | storage            | unstable
//!   index:  ..... 3   | 4  5  6  7  8      | 9  10  11
//!                       first_index()         ^offset    last_index() = 11
//!   applied <= applying <= committed <= last_index()
//! ```
//!
//! Three positions that are easy to conflate (seed 003):
//! - persisted (in storage) is not committed: an entry is committed once a
//!   quorum has it (Raft thesis §3.6), which the leader learns from its
//!   followers' acknowledgements, not from the local disk;
//! - committed is not applied: committed entries are handed to the
//!   application in a Ready (`applying`) and only count as applied once the
//!   application says so on `advance` (`applied`);
//! - and a committed entry need not be persisted locally yet: a follower can
//!   learn that an entry is committed before its own write finishes, which is
//!   why [`RaftLog::next_committed_ents`] takes `allow_unstable`.

use std::fmt;

use crate::error::{Error, Result, StorageError};
use crate::log_unstable::Unstable;
use crate::storage::{Storage, StorageResult};
use crate::types::{Entry, EntryId, LogSlice, NONE, Snapshot, entries_size};

/// The size limit that means "no limit" (etcd's `noLimit`).
pub const NO_LIMIT: u64 = u64::MAX;

/// The length of the longest prefix of `ents` whose total [`Entry::size`] is
/// at most `max_size`, but at least 1 if `ents` is not empty: the semantics
/// of [`limit_size`](crate::limit_size), computed without cloning so that
/// callers clone only the entries they return.
pub(crate) fn limit_len(ents: &[Entry], max_size: u64) -> usize {
    let Some(first) = ents.first() else {
        return 0;
    };
    let mut size = first.size();
    let mut n = 1;
    while n < ents.len() {
        size = size.saturating_add(ents[n].size());
        if size > max_size {
            break;
        }
        n += 1;
    }
    n
}

/// Panics on a storage error raft cannot handle (anything but `Compacted`
/// or `Unavailable` where those are expected): like etcd, a storage that
/// fails leaves the node unable to go on safely.
#[cold]
#[track_caller]
fn storage_failed(op: &str, err: StorageError) -> ! {
    panic!("raft log: storage {op} failed: {err}")
}

/// The raft log of a node: storage + unstable, and the commit and apply
/// positions.
///
/// Invariants:
/// - `applied <= applying <= committed <= last_index()`;
/// - `committed >= first_index() - 1`: everything compacted or covered by a
///   snapshot is committed;
/// - entries at or below `committed` are never overwritten (Raft thesis
///   §3.5, leader completeness; [`RaftLog::append`] panics otherwise).
#[derive(Debug)]
pub struct RaftLog<S: Storage> {
    /// The entries the application has persisted since the last snapshot.
    pub(crate) store: S,
    /// The entries and snapshot not yet persisted.
    pub(crate) unstable: Unstable,
    /// The highest index known to be persisted on a quorum (the paper's
    /// commitIndex). Invariant: never decreases.
    pub(crate) committed: u64,
    /// The highest index handed to the application to apply; entries in
    /// `(applied, applying]` are being applied.
    /// Use: advanced when a Ready with committed entries is accepted.
    /// Invariant: `applied <= applying <= committed`.
    pub(crate) applying: u64,
    /// The highest index the application has applied to its state machine
    /// (the paper's lastApplied).
    /// Use: advanced when a Ready is advanced (or a snapshot applied).
    /// Invariant: `applied <= committed`.
    pub(crate) applied: u64,
    /// The limit on the total [`Entry::size`] of entries handed out by
    /// [`RaftLog::next_committed_ents`] and not yet acknowledged by
    /// [`RaftLog::applied_to`]. Invariant: non-zero.
    pub(crate) max_applying_ents_size: u64,
    /// The total size of entries handed out to apply and not yet
    /// acknowledged.
    pub(crate) applying_ents_size: u64,
    /// Whether handing out committed entries is paused until some are
    /// acknowledged (the limit is reached, or the next entry would exceed
    /// it).
    pub(crate) applying_ents_paused: bool,
}

impl<S: Storage> RaftLog<S> {
    /// A log over `store`, as of a restart: the unstable log is empty and
    /// starts after the storage's last entry, and `committed`, `applying`
    /// and `applied` all stand at the last compaction (`first_index - 1`);
    /// raft moves `committed` up from the persisted hard state.
    ///
    /// `max_applying_ents_size` bounds the size of entries being applied at
    /// once (see [`RaftLog::next_committed_ents`]); [`NO_LIMIT`] for none.
    ///
    /// # Errors
    /// [`Error::Storage`] if the storage cannot report its first or last
    /// index; [`Error::ConfigInvalid`] if `max_applying_ents_size` is 0.
    pub fn new(store: S, max_applying_ents_size: u64) -> Result<Self> {
        if max_applying_ents_size == 0 {
            return Err(Error::ConfigInvalid(
                "max_applying_ents_size must be greater than 0".into(),
            ));
        }
        let first_index = store.first_index()?;
        let last_index = store.last_index()?;
        Ok(RaftLog {
            store,
            unstable: Unstable::new(last_index + 1),
            committed: first_index - 1,
            applying: first_index - 1,
            applied: first_index - 1,
            max_applying_ents_size,
            applying_ents_size: 0,
            applying_ents_paused: false,
        })
    }

    /// The storage.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The storage, for the application to persist into and compact.
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// The unstable part of the log.
    pub fn unstable(&self) -> &Unstable {
        &self.unstable
    }

    /// The commit index.
    pub fn committed(&self) -> u64 {
        self.committed
    }

    /// The highest index handed to the application to apply.
    pub fn applying(&self) -> u64 {
        self.applying
    }

    /// The highest index the application has applied.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Appends the slice a leader sent (a follower handling `MsgApp`) if the
    /// log holds `a.prev`, and advances the commit index to the leader's
    /// `committed` as far as the log is now known to match the leader's.
    ///
    /// Returns the index of the last entry of the slice, or `None` if the log
    /// does not hold `a.prev` (Raft thesis §3.5: the follower rejects, and
    /// the leader backs off). Entries already in the log are left alone; the
    /// first conflicting entry and everything after it are replaced.
    ///
    /// # Panics
    /// If a conflicting entry is at or below the commit index (a committed
    /// entry would be overwritten: the log is corrupt or the leader broken).
    /// In debug builds, also if `a` is not [valid](LogSlice::valid): the
    /// caller validates what it receives and rejects malformed slices.
    pub fn maybe_append(&mut self, a: LogSlice, committed: u64) -> Option<u64> {
        debug_assert!(a.valid().is_ok(), "invalid log slice: {:?}", a.valid());
        if !self.match_term(a.prev) {
            return None;
        }
        let last_new = a.last_index();
        let conflict = self.find_conflict(&a.entries);
        if conflict != 0 {
            assert!(
                conflict > self.committed,
                "entry {conflict} conflicts with committed entry [committed({})]",
                self.committed
            );
            let skip = (conflict - (a.prev.index + 1)) as usize;
            assert!(
                skip <= a.entries.len(),
                "conflict index {conflict} is out of range [{}, {last_new}]",
                a.prev.index + 1
            );
            let mut ents = a.entries;
            // In place: no reallocation, only the kept tail moves.
            ents.drain(..skip);
            self.append(ents);
        }
        // The log matches the leader's up to last_new, not beyond: entries
        // after it may still be a stale leader's.
        self.commit_to(committed.min(last_new));
        Some(last_new)
    }

    /// Writes `ents` (contiguous) at their indexes, replacing any entry from
    /// `ents[0].index` on, and returns the new last index.
    ///
    /// # Panics
    /// If `ents[0].index - 1` is below the commit index (a committed entry
    /// would be overwritten), or `ents` would leave a gap.
    pub fn append(&mut self, ents: Vec<Entry>) -> u64 {
        let Some(first) = ents.first() else {
            return self.last_index();
        };
        let after = first.index - 1;
        assert!(
            after >= self.committed,
            "after({after}) is out of range [committed({})]",
            self.committed
        );
        self.unstable.truncate_and_append(ents);
        self.last_index()
    }

    /// The index of the first entry of `ents` (contiguous) whose term differs
    /// from the log's entry at that index, or that the log does not have.
    /// 0 if the log holds all of `ents`.
    pub fn find_conflict(&self, ents: &[Entry]) -> u64 {
        ents.iter()
            .find(|e| !self.match_term(e.id()))
            .map_or(0, |e| e.index)
    }

    /// A best guess at where this log stops matching another log, of which
    /// only one entry `(index, term)` is known: the largest `i <= index`
    /// whose term is `<= term`, or whose term is unknown (compacted or not
    /// there), with that term (0 if unknown). `(0, 0)` if none.
    ///
    /// A follower rejecting an append uses it to hint where the leader
    /// should retry, and the leader to skip a whole term of mismatching
    /// entries per round trip instead of one entry (the optimisation the
    /// Raft paper sketches at the end of §5.3; thesis §3.5).
    ///
    /// # Panics
    /// On a storage error other than `Compacted` or `Unavailable`.
    pub fn find_conflict_by_term(&self, mut index: u64, term: u64) -> (u64, u64) {
        while index > 0 {
            match self.term(index) {
                // Unknown: it may match, so guess it does.
                Err(_) => return (index, 0),
                Ok(t) if t <= term => return (index, t),
                Ok(_) => index -= 1,
            }
        }
        (0, 0)
    }

    /// The entries to hand to the application for persisting: unstable and
    /// not already in progress.
    pub fn next_unstable_ents(&self) -> &[Entry] {
        self.unstable.next_entries()
    }

    /// Whether there are unstable entries not yet in progress.
    pub fn has_next_unstable_ents(&self) -> bool {
        !self.next_unstable_ents().is_empty()
    }

    /// Whether there are unstable entries, in progress or not.
    pub fn has_next_or_in_progress_unstable_ents(&self) -> bool {
        !self.unstable.entries.is_empty()
    }

    /// The committed entries to hand to the application for applying: from
    /// `applying + 1` up to [`RaftLog::max_appliable_index`], limited in
    /// total size to what `max_applying_ents_size` leaves (but at least one
    /// entry), so it may return fewer. Empty while applying is paused or a
    /// snapshot is pending (the snapshot must be applied first).
    ///
    /// With `allow_unstable`, committed entries not yet persisted locally
    /// may be returned (etcd allows this when storage writes are
    /// synchronous with the Ready loop: they are persisted before being
    /// applied anyway).
    ///
    /// # Panics
    /// If the entries are not available (a broken invariant), or on a
    /// storage error.
    pub fn next_committed_ents(&self, allow_unstable: bool) -> Vec<Entry> {
        if self.applying_ents_paused || self.has_next_or_in_progress_snapshot() {
            return Vec::new();
        }
        let (lo, hi) = (
            self.applying + 1,
            self.max_appliable_index(allow_unstable) + 1,
        );
        if lo >= hi {
            return Vec::new();
        }
        assert!(
            self.applying_ents_size < self.max_applying_ents_size,
            "applying entry size ({}) reached the limit ({}) without pausing",
            self.applying_ents_size,
            self.max_applying_ents_size
        );
        let max_size = self.max_applying_ents_size - self.applying_ents_size;
        match self.slice(lo, hi, max_size) {
            Ok(ents) => ents,
            Err(e) => panic!("unexpected error getting unapplied entries [{lo}, {hi}): {e}"),
        }
    }

    /// Whether [`RaftLog::next_committed_ents`] would return anything
    /// (without building the entries).
    pub fn has_next_committed_ents(&self, allow_unstable: bool) -> bool {
        !self.applying_ents_paused
            && !self.has_next_or_in_progress_snapshot()
            && self.applying < self.max_appliable_index(allow_unstable)
    }

    /// The highest committed index that may be applied: `committed`, or,
    /// without `allow_unstable`, no further than the last persisted entry.
    pub fn max_appliable_index(&self, allow_unstable: bool) -> u64 {
        if allow_unstable {
            self.committed
        } else {
            self.committed.min(self.unstable.offset - 1)
        }
    }

    /// The unstable snapshot to hand to the application, unless already in
    /// progress.
    pub fn next_unstable_snapshot(&self) -> Option<&Snapshot> {
        self.unstable.next_snapshot()
    }

    /// Whether there is an unstable snapshot not yet in progress.
    pub fn has_next_unstable_snapshot(&self) -> bool {
        self.unstable.next_snapshot().is_some()
    }

    /// Whether there is an unstable snapshot, in progress or not.
    pub fn has_next_or_in_progress_snapshot(&self) -> bool {
        self.unstable.snapshot.is_some()
    }

    /// The newest snapshot: the unstable one if any, else the storage's.
    ///
    /// # Errors
    /// The storage's error, e.g.
    /// [`StorageError::SnapshotTemporarilyUnavailable`].
    pub fn snapshot(&self) -> StorageResult<Snapshot> {
        self.snapshot_for(0, NONE)
    }

    /// Like [`RaftLog::snapshot`], passing the storage the lowest index the
    /// snapshot must cover and the node it is for (see
    /// [`Storage::snapshot`]). The unstable snapshot is returned if it
    /// covers `request_index`.
    ///
    /// # Errors
    /// The storage's error, e.g.
    /// [`StorageError::SnapshotTemporarilyUnavailable`].
    pub fn snapshot_for(&self, request_index: u64, to: u64) -> StorageResult<Snapshot> {
        match &self.unstable.snapshot {
            Some(s) if s.metadata.index >= request_index => Ok(s.clone()),
            _ => self.store.snapshot(request_index, to),
        }
    }

    /// The index of the first entry still in the log (after the snapshot).
    ///
    /// # Panics
    /// If the storage fails.
    pub fn first_index(&self) -> u64 {
        match self.unstable.maybe_first_index() {
            Some(i) => i,
            None => self
                .store
                .first_index()
                .unwrap_or_else(|e| storage_failed("first_index", e)),
        }
    }

    /// The index of the last entry of the log (the snapshot's if none).
    ///
    /// # Panics
    /// If the storage fails.
    pub fn last_index(&self) -> u64 {
        match self.unstable.maybe_last_index() {
            Some(i) => i,
            None => self
                .store
                .last_index()
                .unwrap_or_else(|e| storage_failed("last_index", e)),
        }
    }

    /// The id of the last entry of the log.
    ///
    /// # Panics
    /// If its term cannot be read (a broken invariant or a storage failure).
    pub fn last_entry_id(&self) -> EntryId {
        let index = self.last_index();
        match self.term(index) {
            Ok(term) => EntryId::new(term, index),
            Err(e) => panic!("unexpected error getting the last term at {index}: {e}"),
        }
    }

    /// The term of the last entry of the log.
    ///
    /// # Panics
    /// As [`RaftLog::last_entry_id`].
    pub fn last_term(&self) -> u64 {
        self.last_entry_id().term
    }

    /// Advances the commit index to `tocommit`; never moves it back.
    ///
    /// # Panics
    /// If `tocommit` is beyond the last index (the log was corrupted,
    /// truncated or lost).
    pub fn commit_to(&mut self, tocommit: u64) {
        if self.committed < tocommit {
            let last = self.last_index();
            assert!(
                tocommit <= last,
                "tocommit({tocommit}) is out of range [last_index({last})]. \
                 Was the raft log corrupted, truncated, or lost?"
            );
            self.committed = tocommit;
        }
    }

    /// The application has applied everything up to `i`, which releases
    /// `size` bytes of entries handed out to apply.
    ///
    /// # Panics
    /// If `i` is below `applied` or above `committed`.
    pub fn applied_to(&mut self, i: u64, size: u64) {
        assert!(
            self.applied <= i && i <= self.committed,
            "applied({i}) is out of range [prev_applied({}), committed({})]",
            self.applied,
            self.committed
        );
        self.applied = i;
        self.applying = self.applying.max(i);
        self.applying_ents_size = self.applying_ents_size.saturating_sub(size);
        self.applying_ents_paused = self.applying_ents_size >= self.max_applying_ents_size;
    }

    /// A Ready handing out committed entries up to `i`, of total size
    /// `size`, was accepted: they are now being applied.
    ///
    /// Application pauses when the outstanding size reaches the limit, or
    /// when `i` is short of what could be applied (the entries were cut by
    /// the size limit, so the next one would exceed it).
    ///
    /// # Panics
    /// If `i` is above `committed`.
    pub fn accept_applying(&mut self, i: u64, size: u64, allow_unstable: bool) {
        assert!(
            i <= self.committed,
            "applying({i}) is out of range [prev_applying({}), committed({})]",
            self.applying,
            self.committed
        );
        self.applying = i;
        self.applying_ents_size += size;
        self.applying_ents_paused = self.applying_ents_size >= self.max_applying_ents_size
            || i < self.max_appliable_index(allow_unstable);
    }

    /// The application has persisted the entries up to `id` (see
    /// [`Unstable::stable_to`]; stale acknowledgements are ignored).
    pub fn stable_to(&mut self, id: EntryId) {
        self.unstable.stable_to(id);
    }

    /// The application has persisted the snapshot at index `i`.
    pub fn stable_snap_to(&mut self, i: u64) {
        self.unstable.stable_snap_to(i);
    }

    /// A Ready handing out the unstable entries and snapshot was accepted:
    /// they are in progress and are not handed out again.
    pub fn accept_unstable(&mut self) {
        self.unstable.accept_in_progress();
    }

    /// The term of the entry at `i`. The valid range is
    /// `[first_index() - 1, last_index()]`: the entry before the first is
    /// compacted away, but its term is kept for matching appends.
    ///
    /// # Errors
    /// [`StorageError::Compacted`] below that range,
    /// [`StorageError::Unavailable`] above it.
    ///
    /// # Panics
    /// On any other storage error.
    pub fn term(&self, i: u64) -> StorageResult<u64> {
        // The unstable log first: if it knows the term, the index is in
        // range, and the storage need not be asked for its bounds.
        if let Some(t) = self.unstable.maybe_term(i) {
            return Ok(t);
        }
        if i + 1 < self.first_index() {
            return Err(StorageError::Compacted);
        }
        if i > self.last_index() {
            return Err(StorageError::Unavailable);
        }
        match self.store.term(i) {
            Ok(t) => Ok(t),
            Err(e @ (StorageError::Compacted | StorageError::Unavailable)) => Err(e),
            Err(e) => storage_failed("term", e),
        }
    }

    /// The term of `r` (a [`RaftLog::term`] result), or 0 if it is out of
    /// bounds (compacted or unavailable).
    ///
    /// # Panics
    /// On any other storage error.
    pub fn zero_term_on_out_of_bounds(&self, r: StorageResult<u64>) -> u64 {
        match r {
            Ok(t) => t,
            Err(StorageError::Compacted | StorageError::Unavailable) => 0,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }

    /// The entries from `i` to the end, limited to `max_size` bytes (at
    /// least one entry). Empty if `i` is past the last index.
    ///
    /// # Errors
    /// [`StorageError::Compacted`] if `i` is below the first index.
    ///
    /// # Panics
    /// As [`RaftLog::slice`].
    pub fn entries(&self, i: u64, max_size: u64) -> StorageResult<Vec<Entry>> {
        let last = self.last_index();
        if i > last {
            return Ok(Vec::new());
        }
        self.slice(i, last + 1, max_size)
    }

    /// Every entry in the log (for tests).
    ///
    /// # Panics
    /// On a storage error other than `Compacted` (which is retried: a
    /// storage shared with a compacting application may race).
    pub fn all_entries(&self) -> Vec<Entry> {
        loop {
            match self.entries(self.first_index(), NO_LIMIT) {
                Ok(ents) => return ents,
                Err(StorageError::Compacted) => continue,
                Err(e) => storage_failed("entries", e),
            }
        }
    }

    /// Whether a candidate whose log ends at `their_last` is at least as
    /// up-to-date as this log (Raft thesis §3.6.1): a later last term wins,
    /// and with equal last terms the longer log does.
    pub fn is_up_to_date(&self, their_last: EntryId) -> bool {
        let our = self.last_entry_id();
        their_last.term > our.term || (their_last.term == our.term && their_last.index >= our.index)
    }

    /// Whether the log holds the entry `id` (its index is in range and the
    /// term matches).
    ///
    /// # Panics
    /// On a storage error other than `Compacted` or `Unavailable`.
    pub fn match_term(&self, id: EntryId) -> bool {
        self.term(id.index).is_ok_and(|t| t == id.term)
    }

    /// Commits up to `at.index` if that advances the commit index and the
    /// log's entry there has term `at.term`: the leader passes its current
    /// term, as only entries of the current term are committed by counting
    /// replicas (Raft thesis §3.6.2); earlier ones commit with them.
    ///
    /// # Panics
    /// As [`RaftLog::commit_to`] and [`RaftLog::match_term`].
    pub fn maybe_commit(&mut self, at: EntryId) -> bool {
        // Term 0 never commits: no leader has it, and out-of-range indexes
        // read as term 0 in some callers.
        if at.term != 0 && at.index > self.committed && self.match_term(at) {
            self.commit_to(at.index);
            return true;
        }
        false
    }

    /// Replaces the log with `snapshot` (received from a leader): it becomes
    /// the unstable snapshot, every entry is dropped and the commit index
    /// moves to the snapshot's. `applied` moves once the application has
    /// applied it.
    pub fn restore(&mut self, snapshot: Snapshot) {
        self.committed = snapshot.metadata.index;
        self.unstable.restore(snapshot);
    }

    /// Visits the entries in `[lo, hi)` in pages of at most `page_size`
    /// bytes (or one entry, if larger), in order, while `visit` returns
    /// true.
    ///
    /// # Errors
    /// [`StorageError::Compacted`] if the range starts or (after some pages)
    /// continues below the first index.
    ///
    /// # Panics
    /// As [`RaftLog::slice`].
    pub fn scan(
        &self,
        mut lo: u64,
        hi: u64,
        page_size: u64,
        mut visit: impl FnMut(&[Entry]) -> bool,
    ) -> StorageResult<()> {
        while lo < hi {
            let ents = self.slice(lo, hi, page_size)?;
            assert!(!ents.is_empty(), "got 0 entries in [{lo}, {hi})");
            if !visit(&ents) {
                break;
            }
            lo += ents.len() as u64;
        }
        Ok(())
    }

    /// The entries in `[lo, hi)`, limited to `max_size` bytes counted by
    /// [`Entry::size`] (but at least one entry if the range is not empty),
    /// read from storage below `unstable.offset` and from the unstable log
    /// from it on.
    ///
    /// Only the entries returned are cloned (a reference count per payload);
    /// a range served from the unstable log costs nothing more.
    ///
    /// # Errors
    /// [`StorageError::Compacted`] if `lo` is below the first index.
    ///
    /// # Panics
    /// If `lo > hi`, `hi > last_index() + 1`, the storage does not have
    /// entries it should have (`Unavailable`) or fails.
    pub fn slice(&self, lo: u64, hi: u64, max_size: u64) -> StorageResult<Vec<Entry>> {
        self.must_check_out_of_bounds(lo, hi)?;
        if lo == hi {
            return Ok(Vec::new());
        }
        let offset = self.unstable.offset;
        if lo >= offset {
            let ents = self.unstable.slice(lo, hi);
            return Ok(ents[..limit_len(ents, max_size)].to_vec());
        }
        let cut = hi.min(offset);
        let mut ents = match self.store.entries(lo, cut, max_size) {
            Ok(ents) => ents,
            Err(StorageError::Compacted) => return Err(StorageError::Compacted),
            Err(StorageError::Unavailable) => {
                panic!("entries [{lo}, {cut}) are unavailable from storage")
            }
            Err(e) => storage_failed("entries", e),
        };
        if hi <= offset || (ents.len() as u64) < cut - lo {
            // All from storage, or storage already hit the size limit.
            return Ok(ents);
        }
        let size = entries_size(&ents);
        if size >= max_size {
            return Ok(ents);
        }
        let unstable = self.unstable.slice(offset, hi);
        let n = limit_len(unstable, max_size - size);
        // limit_len keeps one entry even when it alone exceeds what is left;
        // here the storage entries already satisfy "at least one".
        if n == 1 && size.saturating_add(unstable[0].size()) > max_size {
            return Ok(ents);
        }
        ents.extend_from_slice(&unstable[..n]);
        Ok(ents)
    }

    /// Checks `first_index() <= lo <= hi <= last_index() + 1`.
    fn must_check_out_of_bounds(&self, lo: u64, hi: u64) -> StorageResult<()> {
        assert!(lo <= hi, "invalid slice {lo} > {hi}");
        let first = self.first_index();
        if lo < first {
            return Err(StorageError::Compacted);
        }
        let last = self.last_index();
        assert!(
            hi <= last + 1,
            "slice [{lo}, {hi}) out of bound [{first}, {last}]"
        );
        Ok(())
    }
}

/// etcd's `raftLog.String()`: the positions, for logs and test output.
impl<S: Storage> fmt::Display for RaftLog<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "committed={}, applied={}, applying={}, unstable.offset={}, \
             unstable.offset_in_progress={}, len(unstable.entries)={}",
            self.committed,
            self.applied,
            self.applying,
            self.unstable.offset,
            self.unstable.offset_in_progress,
            self.unstable.entries.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;
    use crate::testutil::{ent, ents};
    use crate::types::SnapshotMetadata;

    /// An entry whose `Entry::size` is exactly `size` (>= 16).
    fn sized(term: u64, index: u64, size: u64) -> Entry {
        Entry::new(
            term,
            index,
            vec![0u8; (size - crate::ENTRY_OVERHEAD) as usize],
        )
    }

    fn snap(index: u64, term: u64) -> Snapshot {
        Snapshot {
            data: Default::default(),
            metadata: SnapshotMetadata {
                index,
                term,
                ..Default::default()
            },
        }
    }

    fn id(term: u64, index: u64) -> EntryId {
        EntryId::new(term, index)
    }

    /// A log over a storage holding `stored` (after a snapshot at
    /// `snap_index`, term 1 unless an entry says otherwise) with `unstable`
    /// appended and nothing in progress.
    fn log_with(snap_index: u64, stored: &[Entry], unstable: Vec<Entry>) -> RaftLog<MemStorage> {
        let mut store = MemStorage::new();
        if snap_index > 0 {
            store.apply_snapshot(snap(snap_index, 1)).unwrap();
        }
        store.append(stored).unwrap();
        let mut log = RaftLog::new(store, NO_LIMIT).unwrap();
        if !unstable.is_empty() {
            log.append(unstable);
        }
        log
    }

    fn indexes(ents: &[Entry]) -> Vec<u64> {
        ents.iter().map(|e| e.index).collect()
    }

    /// Seed 003's example and write flow, step by step.
    #[test]
    fn seed_003_worked_example() {
        // Part 1: entries 1..=5 persisted; 6, 7, 8 unstable and all three
        // being persisted: offset = 6, offset_in_progress = 9.
        let mut log = log_with(0, &ents(1, &[1, 1, 1, 1, 1]), vec![]);
        log.append(ents(6, &[1, 1, 1]));
        log.accept_unstable();
        assert_eq!(log.unstable.offset, 6);
        assert_eq!(log.unstable.offset_in_progress, 9);
        // entries[0..3] stand for raft indexes 6, 7, 8 (= i + offset).
        assert_eq!(indexes(&log.unstable.entries), [6, 7, 8]);
        assert_eq!(indexes(log.unstable.slice(6, 9)), [6, 7, 8]);
        // entries[..9 - 6] are all in progress: nothing left to hand out.
        assert!(log.next_unstable_ents().is_empty());
        assert!(!log.has_next_unstable_ents());
        assert!(log.has_next_or_in_progress_unstable_ents());
        assert_eq!(log.first_index(), 1);
        assert_eq!(log.last_index(), 8);
        assert_eq!(log.last_entry_id(), id(1, 8));
        // The log reads as one, across storage and unstable.
        assert_eq!(
            indexes(&log.slice(4, 9, NO_LIMIT).unwrap()),
            [4, 5, 6, 7, 8]
        );
        assert_eq!(indexes(&log.all_entries()), [1, 2, 3, 4, 5, 6, 7, 8]);

        // Part 2: the write of entries 4 and 5, from a log that has
        // committed and applied 3 entries: committed = applied = 3, the
        // unstable log empty, offset = offset_in_progress = 4.
        let mut log = log_with(0, &ents(1, &[1, 1, 1]), vec![]);
        log.commit_to(3);
        log.applied_to(3, 0);
        assert_eq!((log.committed, log.applying, log.applied), (3, 3, 3));
        assert_eq!(
            (log.unstable.offset, log.unstable.offset_in_progress),
            (4, 4)
        );
        assert!(log.unstable.entries.is_empty());

        // A request appends two entries to unstable.entries; no index moves.
        let last = log.append(ents(4, &[1, 1]));
        assert_eq!(last, 5);
        assert_eq!((log.committed, log.applying, log.applied), (3, 3, 3));
        assert_eq!(
            (log.unstable.offset, log.unstable.offset_in_progress),
            (4, 4)
        );

        // HasReady: entries[offset_in_progress - offset..] holds 2 entries.
        assert!(log.has_next_unstable_ents());
        // readyWithoutAccept puts them in Ready.entries.
        let rd_entries = log.next_unstable_ents().to_vec();
        assert_eq!(indexes(&rd_entries), [4, 5]);

        // acceptReady: [4, 6) are now being persisted.
        log.accept_unstable();
        assert_eq!(log.unstable.offset_in_progress, 6);
        assert!(!log.has_next_unstable_ents());

        // The application persists them and calls Advance: the callback
        // drops them from unstable, and offset = storage last index + 1 = 6.
        log.store_mut().append(&rd_entries).unwrap();
        log.stable_to(rd_entries.last().unwrap().id());
        assert!(log.unstable.entries.is_empty());
        assert_eq!(log.unstable.offset, 6);
        assert_eq!(log.store().last_index().unwrap() + 1, 6);
        // Persisted is not committed.
        assert_eq!(log.committed, 3);
        assert!(!log.has_next_committed_ents(false));

        // A quorum has them: committed.
        assert!(log.maybe_commit(id(1, 5)));
        assert_eq!(log.committed, 5);

        // HasReady: committed but not applied, in (applying, committed].
        assert!(log.has_next_committed_ents(false));
        let committed_entries = log.next_committed_ents(false);
        assert_eq!(indexes(&committed_entries), [4, 5]);

        // acceptReady: [4, 5] are being applied. Committed is not applied.
        let size = entries_size(&committed_entries);
        log.accept_applying(5, size, false);
        assert_eq!((log.applying, log.applied), (5, 3));
        assert!(!log.has_next_committed_ents(false));

        // Advance: applied = 5. Final state.
        log.applied_to(5, size);
        assert_eq!((log.committed, log.applying, log.applied), (5, 5, 5));
        assert_eq!(
            (log.unstable.offset, log.unstable.offset_in_progress),
            (6, 6)
        );
        assert!(log.unstable.entries.is_empty());
        assert_eq!(log.applying_ents_size, 0);
        assert!(!log.applying_ents_paused);
    }

    #[test]
    fn log_slice_valid() {
        let ok = |term, prev, entries| LogSlice::new(term, prev, entries).valid();
        assert!(ok(1, id(0, 0), vec![]).is_ok());
        assert!(ok(3, id(1, 4), ents(5, &[1, 2, 3])).is_ok());
        assert!(ok(3, id(3, 4), vec![]).is_ok());
        assert!(
            ok(2, id(3, 4), vec![]).is_err(),
            "prev term above leader term"
        );
        assert!(ok(3, id(2, 4), ents(5, &[1])).is_err(), "term decreases");
        assert!(
            ok(3, id(1, 4), ents(5, &[4])).is_err(),
            "term above leader's"
        );
        assert!(ok(3, id(1, 4), ents(6, &[1])).is_err(), "gap after prev");
        let mut gap = ents(5, &[1, 1]);
        gap[1].index = 7;
        assert!(ok(3, id(1, 4), gap).is_err(), "gap between entries");

        let s = LogSlice::new(3, id(1, 4), ents(5, &[1, 2]));
        assert_eq!(s.last_index(), 6);
        assert_eq!(s.last_entry_id(), id(2, 6));
        let empty = LogSlice::new(3, id(1, 4), vec![]);
        assert_eq!(empty.last_index(), 4);
        assert_eq!(empty.last_entry_id(), id(1, 4));
    }

    #[test]
    fn new_starts_at_the_last_compaction() {
        let mut store = MemStorage::new();
        store.append(&ents(1, &[1, 1, 2, 2, 3])).unwrap();
        store.compact(2).unwrap();
        let log = RaftLog::new(store, NO_LIMIT).unwrap();
        assert_eq!((log.committed, log.applying, log.applied), (2, 2, 2));
        assert_eq!(log.first_index(), 3);
        assert_eq!(log.last_index(), 5);
        assert_eq!(log.unstable.offset, 6);
        assert_eq!(log.unstable.offset_in_progress, 6);
        assert_eq!(
            log.to_string(),
            "committed=2, applied=2, applying=2, unstable.offset=6, unstable.offset_in_progress=6, len(unstable.entries)=0"
        );

        assert!(matches!(
            RaftLog::new(MemStorage::new(), 0),
            Err(Error::ConfigInvalid(_))
        ));
    }

    #[test]
    fn find_conflict() {
        let log = log_with(0, &[], ents(1, &[1, 2, 3]));
        // (entries, expected conflict)
        let cases: Vec<(Vec<Entry>, u64)> = vec![
            (vec![], 0),
            // All present.
            (ents(1, &[1, 2, 3]), 0),
            (ents(2, &[2, 3]), 0),
            (ents(3, &[3]), 0),
            // New entries past the end.
            (ents(1, &[1, 2, 3, 4, 4]), 4),
            (ents(2, &[2, 3, 4, 4]), 4),
            (ents(4, &[4, 4]), 4),
            // Conflicts with existing entries.
            (ents(1, &[4, 4]), 1),
            (ents(2, &[1, 4, 4]), 2),
            (ents(3, &[1, 2, 4, 4]), 3),
        ];
        for (i, (e, want)) in cases.into_iter().enumerate() {
            assert_eq!(log.find_conflict(&e), want, "case {i}");
        }
    }

    #[test]
    fn find_conflict_by_term() {
        // Log: snapshot at 2 (term 1), entries 3..=7 with terms 2 2 4 4 5.
        let log = log_with(2, &ents(3, &[2, 2, 4, 4]), ents(7, &[5]));
        // (index, term, expected (index, term))
        let cases = [
            // Beyond the last index: unknown, guessed to match.
            (9, 9, (9, 0)),
            (8, 5, (8, 0)),
            // Our term is already <= theirs.
            (7, 5, (7, 5)),
            (7, 6, (7, 5)),
            (6, 4, (6, 4)),
            // Skip over higher-term entries.
            (7, 4, (6, 4)),
            (7, 3, (4, 2)),
            (7, 2, (4, 2)),
            (5, 3, (4, 2)),
            (7, 1, (2, 1)),
            // Below the snapshot: compacted, unknown.
            (7, 0, (1, 0)),
            (1, 0, (1, 0)),
            (0, 0, (0, 0)),
        ];
        for (index, term, want) in cases {
            assert_eq!(
                log.find_conflict_by_term(index, term),
                want,
                "index {index} term {term}"
            );
        }
        // An empty log: index 0 holds term 0.
        let empty = log_with(0, &[], vec![]);
        assert_eq!(empty.find_conflict_by_term(3, 1), (3, 0));
        assert_eq!(empty.find_conflict_by_term(0, 1), (0, 0));
    }

    #[test]
    fn maybe_append() {
        // Log 1..=3 with terms 1 2 3, committed 1.
        let prev_terms = [1, 2, 3];
        struct Case {
            prev: EntryId,
            committed: u64,
            entries: Vec<Entry>,
            want: Option<u64>,
            want_commit: u64,
            want_log: Vec<u64>, // terms of the whole log
        }
        let cases = [
            // prev does not match: rejected, nothing changes.
            Case {
                prev: id(2, 3),
                committed: 3,
                entries: ents(4, &[4]),
                want: None,
                want_commit: 1,
                want_log: vec![1, 2, 3],
            },
            // prev beyond the end.
            Case {
                prev: id(3, 4),
                committed: 3,
                entries: ents(5, &[4]),
                want: None,
                want_commit: 1,
                want_log: vec![1, 2, 3],
            },
            // Matches at the end, nothing new: commit capped at last new.
            Case {
                prev: id(3, 3),
                committed: 3,
                entries: vec![],
                want: Some(3),
                want_commit: 3,
                want_log: vec![1, 2, 3],
            },
            // Leader commit above the slice: capped at the slice's end,
            // although the log goes further.
            Case {
                prev: id(2, 2),
                committed: 3,
                entries: vec![],
                want: Some(2),
                want_commit: 2,
                want_log: vec![1, 2, 3],
            },
            // Never moves the commit back.
            Case {
                prev: id(3, 3),
                committed: 0,
                entries: vec![],
                want: Some(3),
                want_commit: 1,
                want_log: vec![1, 2, 3],
            },
            // Append new entries.
            Case {
                prev: id(3, 3),
                committed: 5,
                entries: ents(4, &[4, 4]),
                want: Some(5),
                want_commit: 5,
                want_log: vec![1, 2, 3, 4, 4],
            },
            Case {
                prev: id(3, 3),
                committed: 4,
                entries: ents(4, &[4, 4]),
                want: Some(5),
                want_commit: 4,
                want_log: vec![1, 2, 3, 4, 4],
            },
            // Entries already present: no change, no truncation.
            Case {
                prev: id(1, 1),
                committed: 2,
                entries: ents(2, &[2]),
                want: Some(2),
                want_commit: 2,
                want_log: vec![1, 2, 3],
            },
            // Present prefix, then new entries.
            Case {
                prev: id(1, 1),
                committed: 4,
                entries: ents(2, &[2, 3, 4]),
                want: Some(4),
                want_commit: 4,
                want_log: vec![1, 2, 3, 4],
            },
            // Conflict at 3: truncated and replaced.
            Case {
                prev: id(2, 2),
                committed: 3,
                entries: ents(3, &[4]),
                want: Some(3),
                want_commit: 3,
                want_log: vec![1, 2, 4],
            },
            // Conflict at 2, after prev 1.
            Case {
                prev: id(1, 1),
                committed: 1,
                entries: ents(2, &[4, 4]),
                want: Some(3),
                want_commit: 1,
                want_log: vec![1, 4, 4],
            },
            // Present entry, then conflict.
            Case {
                prev: id(1, 1),
                committed: 3,
                entries: ents(2, &[2, 4, 4]),
                want: Some(4),
                want_commit: 3,
                want_log: vec![1, 2, 4, 4],
            },
        ];
        for (i, c) in cases.into_iter().enumerate() {
            let mut log = log_with(0, &[], ents(1, &prev_terms));
            log.commit_to(1);
            let a = LogSlice::new(4, c.prev, c.entries);
            assert_eq!(log.maybe_append(a, c.committed), c.want, "case {i}");
            assert_eq!(log.committed, c.want_commit, "case {i}: commit");
            let terms: Vec<u64> = log.all_entries().iter().map(|e| e.term).collect();
            assert_eq!(terms, c.want_log, "case {i}: log");
        }
    }

    #[test]
    fn maybe_append_over_persisted_entries() {
        // Entries 1..=3 persisted (term 1), 4 unstable; a new leader
        // overwrites from 3.
        let mut log = log_with(0, &ents(1, &[1, 1, 1]), ents(4, &[1]));
        log.accept_unstable();
        let got = log.maybe_append(LogSlice::new(2, id(1, 2), ents(3, &[2, 2])), 0);
        assert_eq!(got, Some(4));
        assert_eq!(log.unstable.offset, 3);
        assert_eq!(log.unstable.offset_in_progress, 3, "rewound");
        assert_eq!(indexes(log.next_unstable_ents()), [3, 4]);
        assert_eq!(log.term(3), Ok(2), "unstable shadows storage");
        assert_eq!(log.term(2), Ok(1));
        // The stale write of 4 (term 1) finishing is ignored.
        log.stable_to(id(1, 4));
        assert_eq!(log.unstable.offset, 3);
    }

    #[test]
    #[should_panic(expected = "conflicts with committed entry")]
    fn maybe_append_panics_on_committed_conflict() {
        let mut log = log_with(0, &[], ents(1, &[1, 2, 3]));
        log.commit_to(2);
        log.maybe_append(LogSlice::new(4, id(1, 1), ents(2, &[4])), 3);
    }

    #[test]
    fn append() {
        // (existing stored terms from 1, appended, want last, want log terms,
        // want unstable offset)
        let cases: Vec<(Vec<Entry>, u64, Vec<u64>, u64)> = vec![
            (vec![], 2, vec![1, 2], 3),
            (ents(3, &[2]), 3, vec![1, 2, 2], 3),
            // Conflicts with index 1.
            (ents(1, &[2]), 1, vec![2], 1),
            // Conflicts with index 2.
            (ents(2, &[3, 3]), 3, vec![1, 3, 3], 2),
        ];
        for (i, (to_append, want_last, want_terms, want_offset)) in cases.into_iter().enumerate() {
            let mut log = log_with(0, &ents(1, &[1, 2]), vec![]);
            assert_eq!(log.append(to_append), want_last, "case {i}");
            let terms: Vec<u64> = log.all_entries().iter().map(|e| e.term).collect();
            assert_eq!(terms, want_terms, "case {i}");
            assert_eq!(log.unstable.offset, want_offset, "case {i}");
        }
    }

    #[test]
    #[should_panic(expected = "after(1) is out of range [committed(2)]")]
    fn append_panics_below_committed() {
        let mut log = log_with(0, &ents(1, &[1, 1, 1]), vec![]);
        log.commit_to(2);
        log.append(ents(2, &[2]));
    }

    #[test]
    fn commit_to() {
        let mut log = log_with(0, &[], ents(1, &[1, 2, 3]));
        log.commit_to(3);
        assert_eq!(log.committed, 3);
        log.commit_to(2);
        assert_eq!(log.committed, 3, "never decreases");
    }

    #[test]
    #[should_panic(expected = "tocommit(4) is out of range [last_index(3)]")]
    fn commit_to_panics_beyond_last_index() {
        let mut log = log_with(0, &[], ents(1, &[1, 2, 3]));
        log.commit_to(4);
    }

    #[test]
    fn maybe_commit() {
        let mut log = log_with(0, &[], ents(1, &[1, 2, 2]));
        assert!(!log.maybe_commit(id(1, 3)), "term mismatch: §3.6.2");
        assert!(!log.maybe_commit(id(0, 3)), "term 0 never commits");
        assert!(!log.maybe_commit(id(2, 4)), "beyond the log");
        assert_eq!(log.committed, 0);
        assert!(log.maybe_commit(id(2, 2)));
        assert_eq!(log.committed, 2);
        assert!(!log.maybe_commit(id(1, 1)), "not an advance");
        assert!(log.maybe_commit(id(2, 3)));
        assert_eq!(log.committed, 3);
    }

    #[test]
    fn is_up_to_date() {
        let log = log_with(0, &[], ents(1, &[1, 2, 3]));
        let last = log.last_index();
        // (their last, up to date?)
        let cases = [
            // Lower term: never, whatever the length.
            (id(2, last - 1), false),
            (id(2, last), false),
            (id(2, last + 1), false),
            // Same term: the longer (or equal) log.
            (id(3, last - 1), false),
            (id(3, last), true),
            (id(3, last + 1), true),
            // Higher term: always.
            (id(4, last - 1), true),
            (id(4, last), true),
            (id(4, last + 1), true),
        ];
        for (their, want) in cases {
            assert_eq!(log.is_up_to_date(their), want, "{their:?}");
        }
    }

    #[test]
    fn next_unstable_ents() {
        let mut log = log_with(0, &ents(1, &[1, 2]), ents(3, &[3, 3]));
        assert_eq!(indexes(log.next_unstable_ents()), [3, 4]);
        assert!(log.has_next_unstable_ents());
        log.accept_unstable();
        assert!(log.next_unstable_ents().is_empty());
        assert!(log.has_next_or_in_progress_unstable_ents());
        // A new proposal while the first write is in flight.
        log.append(ents(5, &[3]));
        assert_eq!(indexes(log.next_unstable_ents()), [5]);
        log.accept_unstable();
        log.stable_to(id(3, 4));
        assert!(log.has_next_or_in_progress_unstable_ents());
        assert!(!log.has_next_unstable_ents());
        log.stable_to(id(3, 5));
        assert!(!log.has_next_or_in_progress_unstable_ents());
        assert_eq!(log.unstable.offset, 6);
    }

    #[test]
    fn next_committed_ents_and_allow_unstable() {
        // Entries 1..=3 persisted, 4..=6 unstable; snapshot at 0.
        // (applied, applying, committed, allow_unstable, pending snapshot,
        // expected indexes)
        let cases: Vec<(u64, u64, u64, bool, bool, Vec<u64>)> = vec![
            (3, 3, 5, true, false, vec![4, 5]),
            (3, 3, 5, false, false, vec![]),
            (0, 0, 5, false, false, vec![1, 2, 3]),
            (0, 0, 5, true, false, vec![1, 2, 3, 4, 5]),
            (0, 0, 3, true, false, vec![1, 2, 3]),
            (0, 2, 5, false, false, vec![3]),
            (0, 2, 5, true, false, vec![3, 4, 5]),
            (1, 1, 6, true, false, vec![2, 3, 4, 5, 6]),
            (5, 5, 5, true, false, vec![]),
            (0, 3, 3, true, false, vec![]),
            // A pending snapshot holds back committed entries.
            (0, 0, 5, true, true, vec![]),
        ];
        for (i, (applied, applying, committed, allow, snapshot, want)) in
            cases.into_iter().enumerate()
        {
            let mut log = log_with(0, &ents(1, &[1, 1, 1]), ents(4, &[1, 1, 1]));
            log.commit_to(committed);
            log.applied = applied;
            log.applying = applying;
            if snapshot {
                // Put a snapshot in the unstable log without disturbing the
                // entries (as a leader's snapshot awaiting persistence).
                log.unstable.snapshot = Some(snap(0, 0));
            }
            let got = log.next_committed_ents(allow);
            assert_eq!(indexes(&got), want, "case {i}");
            assert_eq!(
                log.has_next_committed_ents(allow),
                !want.is_empty(),
                "case {i}"
            );
            let max = log.max_appliable_index(allow);
            assert!(got.iter().all(|e| e.index <= max), "case {i}");
        }
    }

    #[test]
    fn next_committed_ents_respects_the_applying_size_limit() {
        // Five entries of size 100 each, all committed, limit 250.
        let stored: Vec<Entry> = (1..=5).map(|i| sized(1, i, 100)).collect();
        let mut store = MemStorage::new();
        store.append(&stored).unwrap();
        let mut log = RaftLog::new(store, 250).unwrap();
        log.commit_to(5);

        let first = log.next_committed_ents(false);
        assert_eq!(indexes(&first), [1, 2]);
        // Accepting a batch cut by the limit pauses applying.
        log.accept_applying(2, entries_size(&first), false);
        assert_eq!(log.applying_ents_size, 200);
        assert!(log.applying_ents_paused);
        assert!(!log.has_next_committed_ents(false));
        assert!(log.next_committed_ents(false).is_empty());

        // Acknowledging one entry (100 bytes) unpauses: 150 bytes left.
        log.applied_to(1, 100);
        assert!(!log.applying_ents_paused);
        assert_eq!(indexes(&log.next_committed_ents(false)), [3]);
        log.accept_applying(3, 100, false);
        assert_eq!(log.applying_ents_size, 200);
        assert!(log.applying_ents_paused, "cut short of committed");

        // Everything applied: the rest fits.
        log.applied_to(3, 200);
        assert_eq!(log.applying_ents_size, 0);
        let rest = log.next_committed_ents(false);
        assert_eq!(indexes(&rest), [4, 5]);
        log.accept_applying(5, 200, false);
        assert!(!log.applying_ents_paused, "all handed out, under the limit");
        log.applied_to(5, 200);
        assert_eq!(
            (log.applied, log.applying, log.applying_ents_size),
            (5, 5, 0)
        );
    }

    #[test]
    fn a_single_entry_over_the_applying_limit_is_still_handed_out() {
        let mut store = MemStorage::new();
        store
            .append(&[sized(1, 1, 1000), sized(1, 2, 100)])
            .unwrap();
        let mut log = RaftLog::new(store, 500).unwrap();
        log.commit_to(2);
        assert_eq!(indexes(&log.next_committed_ents(false)), [1]);
        log.accept_applying(1, 1000, false);
        assert!(log.applying_ents_paused, "at the limit");
        // Underflow is clamped.
        log.applied_to(1, 5000);
        assert_eq!(log.applying_ents_size, 0);
        assert_eq!(indexes(&log.next_committed_ents(false)), [2]);
    }

    #[test]
    fn accept_applying_reaching_the_limit_pauses() {
        let stored: Vec<Entry> = (1..=2).map(|i| sized(1, i, 100)).collect();
        let mut store = MemStorage::new();
        store.append(&stored).unwrap();
        let mut log = RaftLog::new(store, 200).unwrap();
        log.commit_to(2);
        log.accept_applying(2, 200, false);
        assert!(log.applying_ents_paused);
        log.applied_to(2, 200);
        assert!(!log.applying_ents_paused);
    }

    #[test]
    #[should_panic(expected = "applied(4) is out of range")]
    fn applied_to_panics_beyond_commit() {
        let mut log = log_with(0, &ents(1, &[1, 1, 1, 1]), vec![]);
        log.commit_to(3);
        log.applied_to(4, 0);
    }

    #[test]
    #[should_panic(expected = "applied(1) is out of range")]
    fn applied_to_panics_going_back() {
        let mut log = log_with(0, &ents(1, &[1, 1, 1, 1]), vec![]);
        log.commit_to(3);
        log.applied_to(2, 0);
        log.applied_to(1, 0);
    }

    #[test]
    #[should_panic(expected = "applying(4) is out of range")]
    fn accept_applying_panics_beyond_commit() {
        let mut log = log_with(0, &ents(1, &[1, 1, 1, 1]), vec![]);
        log.commit_to(3);
        log.accept_applying(4, 0, true);
    }

    #[test]
    fn term_bounds() {
        // Snapshot at 3 (term 1), stored 4..=5, unstable 6..=7.
        let log = log_with(3, &ents(4, &[2, 3]), ents(6, &[4, 5]));
        assert_eq!(log.first_index(), 4);
        assert_eq!(log.last_index(), 7);
        assert_eq!(log.term(2), Err(StorageError::Compacted));
        assert_eq!(log.term(3), Ok(1), "first_index - 1: kept for matching");
        assert_eq!(log.term(4), Ok(2));
        assert_eq!(log.term(5), Ok(3));
        assert_eq!(log.term(6), Ok(4));
        assert_eq!(log.term(7), Ok(5));
        assert_eq!(log.term(8), Err(StorageError::Unavailable));
        assert_eq!(log.zero_term_on_out_of_bounds(log.term(8)), 0);
        assert_eq!(log.zero_term_on_out_of_bounds(log.term(2)), 0);
        assert_eq!(log.zero_term_on_out_of_bounds(log.term(5)), 3);
        assert_eq!(log.last_term(), 5);
        assert!(log.match_term(id(1, 3)));
        assert!(!log.match_term(id(2, 3)));
        assert!(!log.match_term(id(0, 2)));

        // An empty log: index 0, term 0.
        let empty = log_with(0, &[], vec![]);
        assert_eq!(empty.term(0), Ok(0));
        assert_eq!(empty.term(1), Err(StorageError::Unavailable));
        assert_eq!(empty.last_entry_id(), id(0, 0));
    }

    #[test]
    fn term_with_unstable_snapshot() {
        // Storage compacted at 3; an unstable snapshot at 5 (term 2).
        let mut log = log_with(3, &ents(4, &[1]), vec![]);
        log.restore(snap(5, 2));
        assert_eq!(log.first_index(), 6);
        assert_eq!(log.last_index(), 5);
        // Storage still answers for 3 and 4, but they are now compacted.
        assert_eq!(log.term(3), Err(StorageError::Compacted));
        assert_eq!(log.term(4), Err(StorageError::Compacted));
        assert_eq!(log.term(5), Ok(2));
        assert_eq!(log.term(6), Err(StorageError::Unavailable));
    }

    #[test]
    fn compaction_side_effects() {
        // Entries 1..=10 persisted, then 11..=15 unstable; compact at 5.
        let stored: Vec<Entry> = (1..=10).map(|i| ent(i, i)).collect();
        let mut log = log_with(0, &stored, (11..=15).map(|i| ent(i, i)).collect());
        log.commit_to(10);
        log.applied_to(10, 0);
        log.store_mut().compact(5).unwrap();
        assert_eq!(log.first_index(), 6);
        assert_eq!(log.last_index(), 15);
        for i in 5..=15 {
            assert!(log.match_term(id(i, i)), "{i}");
        }
        assert_eq!(log.term(4), Err(StorageError::Compacted));
        assert_eq!(log.slice(4, 7, NO_LIMIT), Err(StorageError::Compacted));
        assert_eq!(log.entries(4, NO_LIMIT), Err(StorageError::Compacted));
        assert_eq!(indexes(&log.entries(14, NO_LIMIT).unwrap()), [14, 15]);
        assert_eq!(log.entries(16, NO_LIMIT), Ok(vec![]));
        assert_eq!(log.all_entries().len(), 10);
        assert_eq!(log.next_unstable_ents().len(), 5);
        let last = log.append(vec![ent(16, 16)]);
        assert_eq!(last, 16);
        assert_eq!(log.last_term(), 16);
    }

    #[test]
    fn restore() {
        let mut log = log_with(0, &ents(1, &[1, 1]), ents(3, &[1]));
        log.accept_unstable();
        log.restore(snap(100, 5));
        assert_eq!(log.committed, 100);
        assert_eq!(log.applied, 0, "moves when the snapshot is applied");
        assert_eq!(log.first_index(), 101);
        assert_eq!(log.last_index(), 100);
        assert_eq!(log.last_entry_id(), id(5, 100));
        assert_eq!(log.unstable.offset, 101);
        assert_eq!(log.unstable.offset_in_progress, 101);
        assert!(log.unstable.entries.is_empty());
        assert!(log.has_next_unstable_snapshot());
        assert!(log.has_next_or_in_progress_snapshot());
        assert_eq!(log.next_unstable_snapshot(), Some(&snap(100, 5)));
        assert!(!log.has_next_committed_ents(true), "snapshot first");
        assert_eq!(log.snapshot(), Ok(snap(100, 5)));

        // Handed out, persisted, applied.
        log.accept_unstable();
        assert!(!log.has_next_unstable_snapshot());
        assert!(log.has_next_or_in_progress_snapshot());
        log.store_mut().apply_snapshot(snap(100, 5)).unwrap();
        log.stable_snap_to(100);
        log.applied_to(100, 0);
        assert!(!log.has_next_or_in_progress_snapshot());
        assert_eq!((log.committed, log.applying, log.applied), (100, 100, 100));
        assert_eq!(log.first_index(), 101);
        assert_eq!(log.last_entry_id(), id(5, 100));
        assert_eq!(log.append(ents(101, &[5])), 101);
    }

    #[test]
    fn stable_to_with_snapshot() {
        // After restoring a snapshot at 5 (term 2): acknowledgements of
        // entries that are not there, or mismatch, are ignored.
        let cases: Vec<(Vec<Entry>, EntryId, usize)> = vec![
            (vec![], id(2, 6), 0),
            (vec![], id(2, 5), 0),
            (ents(6, &[2]), id(2, 6), 0),
            (ents(6, &[2]), id(3, 6), 1),
            (ents(6, &[2]), id(2, 5), 1),
            (ents(6, &[2]), id(2, 7), 1),
        ];
        for (i, (new, ack, want_len)) in cases.into_iter().enumerate() {
            let mut log = log_with(0, &[], vec![]);
            log.restore(snap(5, 2));
            if !new.is_empty() {
                log.append(new);
            }
            log.stable_to(ack);
            assert_eq!(log.unstable.entries.len(), want_len, "case {i}");
            assert!(log.unstable.snapshot.is_some(), "case {i}");
        }
    }

    #[test]
    fn snapshot_prefers_unstable_then_storage() {
        let mut store = MemStorage::new();
        store.append(&ents(1, &[1, 1, 1])).unwrap();
        store.create_snapshot(2, None, &b"state"[..]).unwrap();
        let mut log = RaftLog::new(store, NO_LIMIT).unwrap();
        assert_eq!(log.snapshot().unwrap().metadata.index, 2);
        log.store_mut().set_snapshot_unavailable(true);
        assert_eq!(
            log.snapshot(),
            Err(StorageError::SnapshotTemporarilyUnavailable)
        );
        log.restore(snap(10, 3));
        assert_eq!(log.snapshot(), Ok(snap(10, 3)));
        assert_eq!(log.snapshot_for(10, 2), Ok(snap(10, 3)));
        assert_eq!(
            log.snapshot_for(11, 2),
            Err(StorageError::SnapshotTemporarilyUnavailable),
            "unstable snapshot too old for the request"
        );
    }

    #[test]
    fn slice_across_storage_and_unstable() {
        // Snapshot at 3; stored 4..=6, unstable 7..=9; each entry 100 bytes.
        let mut store = MemStorage::new();
        store.apply_snapshot(snap(3, 1)).unwrap();
        store
            .append(&(4..=6).map(|i| sized(1, i, 100)).collect::<Vec<_>>())
            .unwrap();
        let mut log = RaftLog::new(store, NO_LIMIT).unwrap();
        log.append((7..=9).map(|i| sized(1, i, 100)).collect());
        // (lo, hi, max_size, expected indexes)
        let cases: Vec<(u64, u64, u64, Vec<u64>)> = vec![
            (4, 4, NO_LIMIT, vec![]),
            (4, 7, NO_LIMIT, vec![4, 5, 6]),
            (4, 10, NO_LIMIT, vec![4, 5, 6, 7, 8, 9]),
            (5, 8, NO_LIMIT, vec![5, 6, 7]),
            (6, 7, NO_LIMIT, vec![6]),
            (7, 10, NO_LIMIT, vec![7, 8, 9]),
            (9, 10, NO_LIMIT, vec![9]),
            (10, 10, NO_LIMIT, vec![]),
            // Size limits: at least one entry.
            (4, 10, 0, vec![4]),
            (7, 10, 0, vec![7]),
            (4, 10, 99, vec![4]),
            (4, 10, 100, vec![4]),
            (4, 10, 199, vec![4]),
            (4, 10, 200, vec![4, 5]),
            // The limit falls exactly at the boundary.
            (4, 10, 300, vec![4, 5, 6]),
            // Storage part whole, cut in the unstable part.
            (4, 10, 399, vec![4, 5, 6]),
            (4, 10, 400, vec![4, 5, 6, 7]),
            (4, 10, 550, vec![4, 5, 6, 7, 8]),
            (5, 10, 250, vec![5, 6]),
            (5, 10, 300, vec![5, 6, 7]),
            (6, 10, 150, vec![6]),
            (6, 10, 200, vec![6, 7]),
            (7, 10, 250, vec![7, 8]),
        ];
        for (lo, hi, max, want) in cases {
            let got = log.slice(lo, hi, max).unwrap();
            assert_eq!(indexes(&got), want, "slice({lo}, {hi}, {max})");
            let mut expected = log.all_entries();
            expected.retain(|e| want.contains(&e.index));
            assert_eq!(got, expected);
        }
        assert_eq!(log.slice(3, 5, NO_LIMIT), Err(StorageError::Compacted));
        assert_eq!(log.slice(2, 2, NO_LIMIT), Err(StorageError::Compacted));
    }

    #[test]
    fn slice_with_an_oversized_entry_at_the_boundary() {
        // Stored 1 (100 bytes); unstable 2 (1000 bytes): the oversized
        // unstable entry is not added once the storage part is non-empty.
        let mut log = log_with(0, &[sized(1, 1, 100)], vec![sized(1, 2, 1000)]);
        assert_eq!(indexes(&log.slice(1, 3, 500).unwrap()), [1]);
        assert_eq!(indexes(&log.slice(2, 3, 500).unwrap()), [2]);
        log.append(vec![sized(1, 3, 10_000)]);
        assert_eq!(indexes(&log.slice(1, 4, 1100).unwrap()), [1, 2]);
    }

    #[test]
    #[should_panic(expected = "slice [5, 11) out of bound [4, 9]")]
    fn slice_panics_beyond_last_index() {
        let log = log_with(3, &ents(4, &[1, 1, 1]), ents(7, &[1, 1, 1]));
        let _ = log.slice(5, 11, NO_LIMIT);
    }

    #[test]
    #[should_panic(expected = "invalid slice 6 > 5")]
    fn slice_panics_on_inverted_range() {
        let log = log_with(3, &ents(4, &[1, 1, 1]), ents(7, &[1, 1, 1]));
        let _ = log.slice(6, 5, NO_LIMIT);
    }

    #[test]
    fn slice_of_unstable_entries_shares_payloads() {
        let payload = bytes::Bytes::from(vec![7u8; 1024]);
        let mut log = log_with(0, &[], vec![]);
        log.append(vec![Entry::new(1, 1, payload.clone())]);
        let got = log.slice(1, 2, NO_LIMIT).unwrap();
        assert_eq!(got[0].data.as_ptr(), payload.as_ptr(), "no deep copy");
    }

    #[test]
    fn scan() {
        // Entries 1..=6, stored 1..=3 and unstable 4..=6, 100 bytes each.
        let mut log = log_with(
            0,
            &(1..=3).map(|i| sized(1, i, 100)).collect::<Vec<_>>(),
            vec![],
        );
        log.append((4..=6).map(|i| sized(1, i, 100)).collect());
        for page in [0, 100, 150, 250, 1000] {
            let mut seen = Vec::new();
            log.scan(1, 7, page, |ents| {
                assert!(ents.len() == 1 || entries_size(ents) <= page);
                seen.extend(indexes(ents));
                true
            })
            .unwrap();
            assert_eq!(seen, [1, 2, 3, 4, 5, 6], "page {page}");
        }
        // Stopping early.
        let mut pages = 0;
        log.scan(1, 7, 200, |_| {
            pages += 1;
            pages < 2
        })
        .unwrap();
        assert_eq!(pages, 2);
        log.store_mut().compact(2).unwrap();
        assert_eq!(log.scan(1, 7, 200, |_| true), Err(StorageError::Compacted));
    }

    #[test]
    fn limit_len_matches_limit_size() {
        let ents: Vec<Entry> = (1..=5).map(|i| sized(1, i, 100)).collect();
        for max in [0, 99, 100, 199, 200, 250, 500, 501, NO_LIMIT] {
            let mut v = ents.clone();
            crate::limit_size(&mut v, max);
            assert_eq!(limit_len(&ents, max), v.len(), "max {max}");
        }
        assert_eq!(limit_len(&[], 0), 0);
    }
}
