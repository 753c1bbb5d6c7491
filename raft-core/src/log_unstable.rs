//! [`Unstable`]: the tail of the raft log that the application has not yet
//! persisted (etcd's `log_unstable.go`).
//!
//! New entries (a leader's proposals, a follower's appends) and an incoming
//! snapshot land here first. A Ready hands them to the application, which
//! marks them in progress ([`Unstable::accept_in_progress`]); once the
//! application reports them durable ([`Unstable::stable_to`],
//! [`Unstable::stable_snap_to`]) they are dropped, and raft reads them back
//! from [`Storage`](crate::Storage) from then on.
//!
//! The three positions, for a log with entries 1..=5 persisted and 6..=8
//! unstable, of which 6 and 7 are being written:
//!
//! ```text
//!   storage        unstable.entries
//! 1 2 3 4 5   |   6      7      8
//!                 ^offset       ^offset_in_progress
//! ```
//!
//! `next_entries()` then returns `[8]`: the entries still to hand out.

use crate::Entry;
use crate::types::{EntryId, Snapshot};

/// Up to this capacity, [`Unstable::stable_to`] never gives memory back.
///
/// Judgement call: etcd reallocates the array whenever less than half of it
/// is used (`shrinkEntriesArray`). With pipelined writes, where each
/// acknowledgement leaves a few entries behind and the next proposal appends
/// a few more, that reallocates on every Ready. Small buffers are therefore
/// kept; only a burst that grew the buffer past this is shrunk.
const KEEP_CAPACITY: usize = 64;

/// Entries and a snapshot not yet persisted by the application.
///
/// Invariants:
/// - `offset <= offset_in_progress <= offset + entries.len()`;
/// - `entries[i].index == offset + i`;
/// - if `snapshot` is set, `offset > snapshot.metadata.index` (the snapshot
///   precedes every unstable entry), and `snapshot_in_progress` is false
///   whenever `snapshot` is `None`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Unstable {
    /// An incoming snapshot (from a leader) the application has not yet
    /// persisted. Use: set by [`Unstable::restore`], cleared by
    /// [`Unstable::stable_snap_to`].
    pub(crate) snapshot: Option<Snapshot>,
    /// The unstable entries. Invariant: `entries[i]` has index `offset + i`.
    pub(crate) entries: Vec<Entry>,
    /// The index of `entries[0]` (or of the next entry to append, if empty).
    /// Every entry below it is in storage or in the snapshot.
    pub(crate) offset: u64,
    /// Whether `snapshot` was handed to the application in a Ready.
    pub(crate) snapshot_in_progress: bool,
    /// Entries in `[offset, offset_in_progress)` were handed to the
    /// application in a Ready and are being persisted; entries from
    /// `offset_in_progress` on are still to be handed out.
    /// Invariant: `offset <= offset_in_progress <= offset + entries.len()`.
    pub(crate) offset_in_progress: u64,
}

impl Unstable {
    /// An empty unstable log whose next entry will have index `offset` (the
    /// storage's last index + 1).
    pub fn new(offset: u64) -> Self {
        Unstable {
            snapshot: None,
            entries: Vec::new(),
            offset,
            snapshot_in_progress: false,
            offset_in_progress: offset,
        }
    }

    /// The index of `entries()[0]`, or of the next entry to append if there
    /// is none.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Entries below this index are being persisted by the application;
    /// entries from it on are still to be handed out.
    pub fn offset_in_progress(&self) -> u64 {
        self.offset_in_progress
    }

    /// All unstable entries, in progress or not.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The unstable snapshot, in progress or not.
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }

    /// Whether the unstable snapshot is being persisted.
    pub fn snapshot_in_progress(&self) -> bool {
        self.snapshot_in_progress
    }

    /// The index of the first entry of the log, if the unstable log knows it:
    /// only when it holds a snapshot (the first index is then the snapshot's
    /// index + 1). Otherwise the first index is the storage's.
    pub fn maybe_first_index(&self) -> Option<u64> {
        self.snapshot.as_ref().map(|s| s.metadata.index + 1)
    }

    /// The index of the last entry of the log, if the unstable log holds any
    /// entry or a snapshot. Otherwise the last index is the storage's.
    ///
    /// Deviation from etcd, which answers the snapshot's index when only a
    /// snapshot is left: entries appended after the snapshot may already be
    /// acknowledged ([`Unstable::stable_to`]) while the snapshot is not yet
    /// ([`Unstable::stable_snap_to`]), and then the last entry is
    /// `offset - 1`, in storage. Right after [`Unstable::restore`] the two
    /// answers agree.
    pub fn maybe_last_index(&self) -> Option<u64> {
        match self.entries.len() {
            0 => self.snapshot.as_ref().map(|_| self.offset - 1),
            n => Some(self.offset + n as u64 - 1),
        }
    }

    /// The term of the entry at index `i`, if the unstable log holds it
    /// (as an entry, or as the last entry covered by its snapshot).
    pub fn maybe_term(&self, i: u64) -> Option<u64> {
        if i < self.offset {
            return self
                .snapshot
                .as_ref()
                .filter(|s| s.metadata.index == i)
                .map(|s| s.metadata.term);
        }
        self.entries.get((i - self.offset) as usize).map(|e| e.term)
    }

    /// The entries not yet handed to the application: those from
    /// `offset_in_progress` on.
    pub fn next_entries(&self) -> &[Entry] {
        &self.entries[(self.offset_in_progress - self.offset) as usize..]
    }

    /// The snapshot to hand to the application, unless it is already in
    /// progress.
    pub fn next_snapshot(&self) -> Option<&Snapshot> {
        self.snapshot
            .as_ref()
            .filter(|_| !self.snapshot_in_progress)
    }

    /// Marks everything unstable as handed to the application: all entries
    /// and the snapshot are now in progress (etcd's `acceptInProgress`,
    /// called when a Ready is accepted).
    pub fn accept_in_progress(&mut self) {
        self.offset_in_progress = self.offset + self.entries.len() as u64;
        if self.snapshot.is_some() {
            self.snapshot_in_progress = true;
        }
    }

    /// The application has persisted the entries up to and including `id`:
    /// drops them.
    ///
    /// The acknowledgement is ignored unless `id` names an unstable entry
    /// with the same term. A different term means the entry was overwritten
    /// (by a newer leader's append) after the write started: the write that
    /// just finished holds an entry raft no longer has, and the entry that
    /// replaced it is still to be persisted. An index below `offset` is an
    /// old acknowledgement, or one that matches the unstable snapshot, which
    /// only [`Unstable::stable_snap_to`] acknowledges.
    pub fn stable_to(&mut self, id: EntryId) {
        if id.index < self.offset {
            return;
        }
        let Some(term) = self.maybe_term(id.index) else {
            return;
        };
        if term != id.term {
            return;
        }
        let num = (id.index + 1 - self.offset) as usize;
        let remaining = self.entries.len() - num;
        let capacity = self.entries.capacity();
        if capacity > KEEP_CAPACITY && remaining * 2 < capacity {
            // Mostly unused: move what remains to a buffer that fits it. An
            // empty log allocates nothing: the next append to it adopts the
            // caller's buffer anyway.
            let mut kept = Vec::with_capacity(remaining);
            kept.extend(self.entries.drain(num..));
            self.entries = kept;
        } else {
            self.entries.drain(..num);
        }
        self.offset = id.index + 1;
        self.offset_in_progress = self.offset_in_progress.max(self.offset);
    }

    /// The application has persisted the snapshot at index `i`: drops it if
    /// it is still the unstable snapshot.
    pub fn stable_snap_to(&mut self, i: u64) {
        if self
            .snapshot
            .as_ref()
            .is_some_and(|s| s.metadata.index == i)
        {
            self.snapshot = None;
            self.snapshot_in_progress = false;
        }
    }

    /// Replaces the whole unstable log with `snapshot`: every entry is
    /// dropped and the next entry will follow the snapshot.
    pub fn restore(&mut self, snapshot: Snapshot) {
        self.offset = snapshot.metadata.index + 1;
        self.offset_in_progress = self.offset;
        self.entries.clear();
        self.snapshot = Some(snapshot);
        self.snapshot_in_progress = false;
    }

    /// Writes `ents` (contiguous, non-empty) into the log at their indexes,
    /// dropping any existing entry at or after `ents[0].index`.
    ///
    /// Three cases, by where `ents` starts relative to the unstable entries:
    /// - right after the last one: a plain append, which moves `ents` in;
    /// - at or below `offset`: the whole unstable log is replaced, and entries
    ///   in storage from `ents[0].index` on are shadowed until the new ones
    ///   are persisted over them;
    /// - inside: the suffix is truncated. Entries in progress from that point
    ///   are no longer in progress: they will be handed out again, and the
    ///   acknowledgement of the old write is ignored by
    ///   [`Unstable::stable_to`] (its term no longer matches).
    ///
    /// Taking the `Vec` lets every case move the entries instead of cloning
    /// them; the existing entries kept are never copied.
    ///
    /// # Panics
    /// If `ents` is empty or would leave a gap after the last entry.
    pub fn truncate_and_append(&mut self, ents: Vec<Entry>) {
        let from = ents.first().expect("truncate_and_append: no entries").index;
        let end = self.offset + self.entries.len() as u64;
        if from == end {
            if self.entries.is_empty() {
                // Reuse the caller's buffer rather than copying into ours.
                self.entries = ents;
            } else {
                self.entries.extend(ents);
            }
        } else if from <= self.offset {
            self.entries = ents;
            self.offset = from;
            self.offset_in_progress = from;
        } else {
            assert!(
                from < end,
                "unstable: appending at index {from} leaves a gap after [{}, {end})",
                self.offset
            );
            self.entries.truncate((from - self.offset) as usize);
            self.entries.extend(ents);
            self.offset_in_progress = self.offset_in_progress.min(from);
        }
    }

    /// The unstable entries in `[lo, hi)`.
    ///
    /// # Panics
    /// If `lo > hi` or the range is not within
    /// `[offset, offset + entries.len())`.
    pub fn slice(&self, lo: u64, hi: u64) -> &[Entry] {
        self.must_check_out_of_bounds(lo, hi);
        &self.entries[(lo - self.offset) as usize..(hi - self.offset) as usize]
    }

    fn must_check_out_of_bounds(&self, lo: u64, hi: u64) {
        assert!(lo <= hi, "invalid unstable.slice [{lo}, {hi})");
        let upper = self.offset + self.entries.len() as u64;
        assert!(
            lo >= self.offset && hi <= upper,
            "unstable.slice [{lo}, {hi}) out of bound [{}, {upper})",
            self.offset
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::ents;
    use crate::types::SnapshotMetadata;

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

    fn unstable(snapshot: Option<Snapshot>, entries: Vec<Entry>, offset: u64) -> Unstable {
        let mut u = Unstable::new(offset);
        u.snapshot = snapshot;
        u.entries = entries;
        u
    }

    fn check_invariants(u: &Unstable) {
        assert!(u.offset <= u.offset_in_progress);
        assert!(u.offset_in_progress <= u.offset + u.entries.len() as u64);
        for (i, e) in u.entries.iter().enumerate() {
            assert_eq!(e.index, u.offset + i as u64);
        }
        if let Some(s) = &u.snapshot {
            assert!(u.offset > s.metadata.index);
        } else {
            assert!(!u.snapshot_in_progress);
        }
    }

    #[test]
    fn maybe_first_index() {
        // No snapshot: the first index lives in storage, whatever the entries.
        assert_eq!(unstable(None, ents(5, &[1]), 5).maybe_first_index(), None);
        assert_eq!(unstable(None, vec![], 0).maybe_first_index(), None);
        // A snapshot at 4: the log starts at 5.
        assert_eq!(
            unstable(Some(snap(4, 1)), ents(5, &[1]), 5).maybe_first_index(),
            Some(5)
        );
        assert_eq!(
            unstable(Some(snap(4, 1)), vec![], 5).maybe_first_index(),
            Some(5)
        );
    }

    #[test]
    fn maybe_last_index() {
        assert_eq!(unstable(None, ents(5, &[1]), 5).maybe_last_index(), Some(5));
        assert_eq!(
            unstable(Some(snap(4, 1)), ents(5, &[1, 1]), 5).maybe_last_index(),
            Some(6)
        );
        // Only a snapshot: the last index is the snapshot's.
        assert_eq!(
            unstable(Some(snap(4, 1)), vec![], 5).maybe_last_index(),
            Some(4)
        );
        assert_eq!(unstable(None, vec![], 0).maybe_last_index(), None);
    }

    #[test]
    fn maybe_last_index_after_entries_following_a_snapshot_are_stable() {
        let mut u = Unstable::new(1);
        u.restore(snap(4, 1));
        u.truncate_and_append(ents(5, &[1, 1]));
        u.accept_in_progress();
        // The entries' write finished before the snapshot's was acknowledged.
        u.stable_to(EntryId::new(1, 6));
        check_invariants(&u);
        assert!(u.entries.is_empty());
        assert_eq!(u.maybe_last_index(), Some(6), "not the snapshot's 4");
        assert_eq!(u.maybe_term(5), None, "read from storage");
        u.stable_snap_to(4);
        assert_eq!(u.maybe_last_index(), None);
    }

    #[test]
    fn maybe_term() {
        let u = unstable(None, ents(5, &[1, 2]), 5);
        assert_eq!(u.maybe_term(5), Some(1));
        assert_eq!(u.maybe_term(6), Some(2));
        assert_eq!(u.maybe_term(7), None);
        assert_eq!(u.maybe_term(4), None);

        let u = unstable(Some(snap(4, 1)), ents(5, &[1]), 5);
        assert_eq!(u.maybe_term(5), Some(1));
        assert_eq!(u.maybe_term(6), None);
        assert_eq!(u.maybe_term(4), Some(1), "the snapshot's term");
        assert_eq!(u.maybe_term(3), None, "below the snapshot");

        let u = unstable(Some(snap(4, 1)), vec![], 5);
        assert_eq!(u.maybe_term(4), Some(1));
        assert_eq!(u.maybe_term(5), None);
        assert_eq!(u.maybe_term(3), None);

        assert_eq!(unstable(None, vec![], 0).maybe_term(5), None);
    }

    #[test]
    fn restore() {
        let mut u = unstable(Some(snap(4, 1)), ents(5, &[1, 1]), 5);
        u.offset_in_progress = 6;
        u.snapshot_in_progress = true;
        u.restore(snap(6, 2));
        check_invariants(&u);
        assert_eq!(u.offset, 7);
        assert_eq!(u.offset_in_progress, 7);
        assert!(u.entries.is_empty());
        assert_eq!(u.snapshot, Some(snap(6, 2)));
        assert!(!u.snapshot_in_progress);
        assert_eq!(u.next_snapshot(), Some(&snap(6, 2)));
        assert_eq!(u.maybe_last_index(), Some(6));
        assert_eq!(u.maybe_first_index(), Some(7));
        assert_eq!(u.maybe_term(6), Some(2));
    }

    #[test]
    fn next_entries_and_snapshot() {
        // (offset_in_progress, entries expected from next_entries)
        for (oip, want) in [(5, vec![5, 6]), (6, vec![6]), (7, vec![])] {
            let mut u = unstable(None, ents(5, &[1, 1]), 5);
            u.offset_in_progress = oip;
            let got: Vec<u64> = u.next_entries().iter().map(|e| e.index).collect();
            assert_eq!(got, want, "offset_in_progress {oip}");
        }
        let mut u = unstable(Some(snap(4, 1)), vec![], 5);
        assert_eq!(u.next_snapshot(), Some(&snap(4, 1)));
        u.snapshot_in_progress = true;
        assert_eq!(u.next_snapshot(), None);
        assert_eq!(unstable(None, vec![], 5).next_snapshot(), None);
    }

    #[test]
    fn accept_in_progress() {
        // Entries and snapshot are all marked, whatever was marked before.
        for oip in [5, 6, 7] {
            let mut u = unstable(Some(snap(4, 1)), ents(5, &[1, 1]), 5);
            u.offset_in_progress = oip;
            u.accept_in_progress();
            check_invariants(&u);
            assert_eq!(u.offset_in_progress, 7);
            assert!(u.snapshot_in_progress);
            assert!(u.next_entries().is_empty());
            assert_eq!(u.next_snapshot(), None);
        }
        // Nothing unstable: nothing changes.
        let mut u = unstable(None, vec![], 5);
        u.accept_in_progress();
        assert_eq!(u.offset_in_progress, 5);
        assert!(!u.snapshot_in_progress);
    }

    #[test]
    fn stable_to() {
        struct Case {
            snapshot: Option<Snapshot>,
            entries: Vec<Entry>,
            offset: u64,
            offset_in_progress: u64,
            ack: EntryId,
            want_offset: u64,
            want_oip: u64,
            want_len: usize,
        }
        let cases = [
            // Empty: nothing to acknowledge.
            Case {
                snapshot: None,
                entries: vec![],
                offset: 0,
                offset_in_progress: 0,
                ack: EntryId::new(1, 5),
                want_offset: 0,
                want_oip: 0,
                want_len: 0,
            },
            // The only entry, in progress.
            Case {
                snapshot: None,
                entries: ents(5, &[1]),
                offset: 5,
                offset_in_progress: 6,
                ack: EntryId::new(1, 5),
                want_offset: 6,
                want_oip: 6,
                want_len: 0,
            },
            // The first of two, both in progress.
            Case {
                snapshot: None,
                entries: ents(5, &[1, 1]),
                offset: 5,
                offset_in_progress: 7,
                ack: EntryId::new(1, 5),
                want_offset: 6,
                want_oip: 7,
                want_len: 1,
            },
            // The first of two, neither in progress: offset_in_progress is
            // dragged up to the new offset.
            Case {
                snapshot: None,
                entries: ents(5, &[1, 1]),
                offset: 5,
                offset_in_progress: 5,
                ack: EntryId::new(1, 5),
                want_offset: 6,
                want_oip: 6,
                want_len: 1,
            },
            // Stale: the entry at 6 was overwritten by term 2.
            Case {
                snapshot: None,
                entries: ents(6, &[2]),
                offset: 6,
                offset_in_progress: 7,
                ack: EntryId::new(1, 6),
                want_offset: 6,
                want_oip: 7,
                want_len: 1,
            },
            // Old: below the offset.
            Case {
                snapshot: None,
                entries: ents(5, &[1]),
                offset: 5,
                offset_in_progress: 6,
                ack: EntryId::new(1, 4),
                want_offset: 5,
                want_oip: 6,
                want_len: 1,
            },
            // Beyond the last entry.
            Case {
                snapshot: None,
                entries: ents(5, &[1]),
                offset: 5,
                offset_in_progress: 6,
                ack: EntryId::new(1, 6),
                want_offset: 5,
                want_oip: 6,
                want_len: 1,
            },
            // With a snapshot: an entry after it.
            Case {
                snapshot: Some(snap(4, 1)),
                entries: ents(5, &[1]),
                offset: 5,
                offset_in_progress: 6,
                ack: EntryId::new(1, 5),
                want_offset: 6,
                want_oip: 6,
                want_len: 0,
            },
            // Matching the snapshot, not an entry: ignored.
            Case {
                snapshot: Some(snap(4, 1)),
                entries: ents(5, &[1]),
                offset: 5,
                offset_in_progress: 6,
                ack: EntryId::new(1, 4),
                want_offset: 5,
                want_oip: 6,
                want_len: 1,
            },
            // Only a snapshot: ignored.
            Case {
                snapshot: Some(snap(4, 1)),
                entries: vec![],
                offset: 5,
                offset_in_progress: 5,
                ack: EntryId::new(1, 4),
                want_offset: 5,
                want_oip: 5,
                want_len: 0,
            },
            // Stale term after a snapshot.
            Case {
                snapshot: Some(snap(4, 1)),
                entries: ents(5, &[2]),
                offset: 5,
                offset_in_progress: 6,
                ack: EntryId::new(1, 5),
                want_offset: 5,
                want_oip: 6,
                want_len: 1,
            },
        ];
        for (i, c) in cases.into_iter().enumerate() {
            let mut u = unstable(c.snapshot, c.entries, c.offset);
            u.offset_in_progress = c.offset_in_progress;
            u.snapshot_in_progress = u.snapshot.is_some() && c.offset_in_progress > c.offset;
            u.stable_to(c.ack);
            check_invariants(&u);
            assert_eq!(u.offset, c.want_offset, "case {i}: offset");
            assert_eq!(u.offset_in_progress, c.want_oip, "case {i}: in progress");
            assert_eq!(u.entries.len(), c.want_len, "case {i}: entries");
        }
    }

    #[test]
    fn stable_to_shrinks_a_mostly_unused_buffer() {
        let n = 4 * KEEP_CAPACITY as u64;
        let mut u = Unstable::new(1);
        u.truncate_and_append(ents(1, &vec![1; n as usize]));
        u.accept_in_progress();
        u.stable_to(EntryId::new(1, n - 1));
        check_invariants(&u);
        assert_eq!(u.entries, ents(n, &[1]));
        assert!(u.entries.capacity() <= KEEP_CAPACITY, "shrunk");
        // Emptied: the memory is released.
        u.truncate_and_append(ents(n + 1, &vec![1; n as usize]));
        u.stable_to(EntryId::new(1, 2 * n));
        check_invariants(&u);
        assert!(u.entries.is_empty());
        assert_eq!(u.entries.capacity(), 0);

        // A small buffer is kept across Readies.
        let mut u = Unstable::new(1);
        let mut v = Vec::with_capacity(8);
        v.extend(ents(1, &[1, 1]));
        u.truncate_and_append(v);
        u.stable_to(EntryId::new(1, 2));
        assert!(u.entries.is_empty());
        assert_eq!(u.entries.capacity(), 8);
    }

    #[test]
    fn stable_snap_to() {
        let mut u = unstable(Some(snap(4, 1)), vec![], 5);
        u.snapshot_in_progress = true;
        u.stable_snap_to(3);
        assert!(u.snapshot.is_some(), "another index: ignored");
        u.stable_snap_to(4);
        assert!(u.snapshot.is_none());
        assert!(!u.snapshot_in_progress);
        check_invariants(&u);
        // No snapshot: no-op.
        u.stable_snap_to(4);
        assert_eq!(u, unstable(None, vec![], 5));
    }

    #[test]
    fn truncate_and_append() {
        struct Case {
            entries: Vec<Entry>,
            offset: u64,
            offset_in_progress: u64,
            to_append: Vec<Entry>,
            want_offset: u64,
            want_oip: u64,
            want_entries: Vec<Entry>,
        }
        let cases = [
            // Append right after the last entry.
            Case {
                entries: ents(5, &[1]),
                offset: 5,
                offset_in_progress: 5,
                to_append: ents(6, &[1, 1]),
                want_offset: 5,
                want_oip: 5,
                want_entries: ents(5, &[1, 1, 1]),
            },
            // ... with the existing entry in progress: it stays so.
            Case {
                entries: ents(5, &[1]),
                offset: 5,
                offset_in_progress: 6,
                to_append: ents(6, &[1, 1]),
                want_offset: 5,
                want_oip: 6,
                want_entries: ents(5, &[1, 1, 1]),
            },
            // Append to an empty unstable log.
            Case {
                entries: vec![],
                offset: 5,
                offset_in_progress: 5,
                to_append: ents(5, &[1, 1]),
                want_offset: 5,
                want_oip: 5,
                want_entries: ents(5, &[1, 1]),
            },
            // Replace everything, starting at the offset.
            Case {
                entries: ents(5, &[1]),
                offset: 5,
                offset_in_progress: 5,
                to_append: ents(5, &[2, 2]),
                want_offset: 5,
                want_oip: 5,
                want_entries: ents(5, &[2, 2]),
            },
            // ... which rewinds the in-progress mark.
            Case {
                entries: ents(5, &[1]),
                offset: 5,
                offset_in_progress: 6,
                to_append: ents(5, &[2, 2]),
                want_offset: 5,
                want_oip: 5,
                want_entries: ents(5, &[2, 2]),
            },
            // Replace everything, starting below the offset (overwriting
            // entries already in storage).
            Case {
                entries: ents(5, &[1]),
                offset: 5,
                offset_in_progress: 5,
                to_append: ents(4, &[2, 2, 2]),
                want_offset: 4,
                want_oip: 4,
                want_entries: ents(4, &[2, 2, 2]),
            },
            Case {
                entries: ents(5, &[1]),
                offset: 5,
                offset_in_progress: 6,
                to_append: ents(4, &[2, 2, 2]),
                want_offset: 4,
                want_oip: 4,
                want_entries: ents(4, &[2, 2, 2]),
            },
            // Truncate inside, nothing in progress.
            Case {
                entries: ents(5, &[1, 1, 1]),
                offset: 5,
                offset_in_progress: 5,
                to_append: ents(6, &[2]),
                want_offset: 5,
                want_oip: 5,
                want_entries: ents(5, &[1, 2]),
            },
            // Truncate inside, in progress below the truncation point: kept.
            Case {
                entries: ents(5, &[1, 1, 1]),
                offset: 5,
                offset_in_progress: 6,
                to_append: ents(7, &[2, 2]),
                want_offset: 5,
                want_oip: 6,
                want_entries: ents(5, &[1, 1, 2, 2]),
            },
            // In progress exactly up to the truncation point: kept.
            Case {
                entries: ents(5, &[1, 1, 1]),
                offset: 5,
                offset_in_progress: 7,
                to_append: ents(7, &[2, 2]),
                want_offset: 5,
                want_oip: 7,
                want_entries: ents(5, &[1, 1, 2, 2]),
            },
            // In progress past the truncation point: rewound to it.
            Case {
                entries: ents(5, &[1, 1, 1]),
                offset: 5,
                offset_in_progress: 8,
                to_append: ents(6, &[2]),
                want_offset: 5,
                want_oip: 6,
                want_entries: ents(5, &[1, 2]),
            },
            Case {
                entries: ents(5, &[1, 1, 1]),
                offset: 5,
                offset_in_progress: 8,
                to_append: ents(7, &[2, 2, 2]),
                want_offset: 5,
                want_oip: 7,
                want_entries: ents(5, &[1, 1, 2, 2, 2]),
            },
        ];
        for (i, c) in cases.into_iter().enumerate() {
            let mut u = unstable(None, c.entries, c.offset);
            u.offset_in_progress = c.offset_in_progress;
            u.truncate_and_append(c.to_append);
            check_invariants(&u);
            assert_eq!(u.offset, c.want_offset, "case {i}: offset");
            assert_eq!(u.offset_in_progress, c.want_oip, "case {i}: in progress");
            assert_eq!(u.entries, c.want_entries, "case {i}: entries");
        }
    }

    #[test]
    fn append_to_empty_reuses_the_callers_buffer() {
        let mut u = Unstable::new(5);
        let v = ents(5, &[1, 1, 1]);
        let ptr = v.as_ptr();
        u.truncate_and_append(v);
        assert_eq!(u.entries.as_ptr(), ptr);
    }

    #[test]
    #[should_panic(expected = "leaves a gap")]
    fn truncate_and_append_panics_on_gap() {
        let mut u = unstable(None, ents(5, &[1]), 5);
        u.truncate_and_append(ents(7, &[1]));
    }

    #[test]
    fn slice() {
        let u = unstable(None, ents(5, &[1, 2, 3]), 5);
        assert_eq!(u.slice(5, 8), &ents(5, &[1, 2, 3])[..]);
        assert_eq!(u.slice(6, 7), &ents(6, &[2])[..]);
        assert!(u.slice(8, 8).is_empty());
        assert!(u.slice(5, 5).is_empty());
    }

    #[test]
    #[should_panic(expected = "unstable.slice [4, 6) out of bound [5, 8)")]
    fn slice_panics_below_offset() {
        unstable(None, ents(5, &[1, 2, 3]), 5).slice(4, 6);
    }

    #[test]
    #[should_panic(expected = "unstable.slice [6, 9) out of bound [5, 8)")]
    fn slice_panics_past_end() {
        unstable(None, ents(5, &[1, 2, 3]), 5).slice(6, 9);
    }

    #[test]
    #[should_panic(expected = "invalid unstable.slice [7, 6)")]
    fn slice_panics_on_inverted_range() {
        unstable(None, ents(5, &[1, 2, 3]), 5).slice(7, 6);
    }
}
