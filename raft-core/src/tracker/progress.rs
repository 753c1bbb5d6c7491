use std::fmt;

use super::{Inflights, ProgressState};

/// The leader's view of one follower's (or learner's) log (etcd's
/// `Progress`).
///
/// A small state machine: `Probe` until an append is accepted, `Replicate`
/// while streaming, `Snapshot` while the follower installs a snapshot. The
/// leader drives the transitions (in `raft.rs`); the methods here keep the
/// indexes consistent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// The highest index known to match the leader's log (etcd's `Match`).
    // Invariant: matched < next.
    pub matched: u64,
    /// The index of the next entry to send. Entries in `(matched, next)` are
    /// in flight.
    pub next: u64,
    /// The highest commit index sent to the follower (in an append or a
    /// heartbeat); lets the leader skip sending a commit index the follower
    /// already has.
    // Invariant: sent_commit < next after every transition that lowers
    // `next` (they pull it down).
    pub sent_commit: u64,
    /// How the leader replicates to this follower.
    pub state: ProgressState,
    /// In `Snapshot` state: the index of the snapshot being sent. 0 in other
    /// states.
    pub pending_snapshot: u64,
    /// Whether the follower was heard from recently (since the last
    /// CheckQuorum round); new members start active so that a leader does not
    /// step down before they had a chance to answer.
    pub recent_active: bool,
    /// Whether the append flow is throttled: in `Probe` after an append was
    /// sent and before an answer (or heartbeat response) arrives; in
    /// `Replicate` while the inflight window is full. The leader still sends
    /// an append on heartbeat responses, which unpause it, so progress is
    /// guaranteed.
    pub msg_app_flow_paused: bool,
    /// The appends in flight in `Replicate` state.
    pub inflights: Inflights,
    /// Whether this progress tracks a learner (a non-voting member).
    pub is_learner: bool,
}

impl Progress {
    /// A follower in `Probe` state that will be probed at `next`, with
    /// nothing matched, not recently active, and an inflight window of
    /// `max_inflight` messages and `max_inflight_bytes` bytes (0 for no byte
    /// limit).
    ///
    /// # Panics
    /// If `next` is 0: `matched < next` must hold from the start.
    pub fn new(next: u64, max_inflight: usize, max_inflight_bytes: u64) -> Self {
        assert!(next > 0, "Progress::new: next must be at least 1");
        Progress {
            matched: 0,
            next,
            sent_commit: 0,
            state: ProgressState::Probe,
            pending_snapshot: 0,
            recent_active: false,
            msg_app_flow_paused: false,
            inflights: Inflights::new(max_inflight, max_inflight_bytes),
            is_learner: false,
        }
    }

    /// Moves to `state`, unpausing the flow and clearing the pending
    /// snapshot and the inflight window. `next` is left to the caller.
    pub fn reset_state(&mut self, state: ProgressState) {
        self.msg_app_flow_paused = false;
        self.pending_snapshot = 0;
        self.state = state;
        self.inflights.reset();
    }

    /// Moves to `Probe`: the next probe is at `matched + 1`, or right after
    /// the pending snapshot when leaving `Snapshot` state (the snapshot was
    /// delivered, so the follower should have it).
    pub fn become_probe(&mut self) {
        if self.state == ProgressState::Snapshot {
            let pending = self.pending_snapshot;
            self.reset_state(ProgressState::Probe);
            self.next = (self.matched + 1).max(pending + 1);
        } else {
            self.reset_state(ProgressState::Probe);
            self.next = self.matched + 1;
        }
        self.sent_commit = self.sent_commit.min(self.next - 1);
    }

    /// Moves to `Replicate`, streaming from `matched + 1`.
    pub fn become_replicate(&mut self) {
        self.reset_state(ProgressState::Replicate);
        self.next = self.matched + 1;
    }

    /// Moves to `Snapshot` for a snapshot at `snapshot_index`. Once it is
    /// installed the follower's log ends there, and the snapshot carries the
    /// commit index up to it.
    pub fn become_snapshot(&mut self, snapshot_index: u64) {
        self.reset_state(ProgressState::Snapshot);
        self.pending_snapshot = snapshot_index;
        self.next = snapshot_index + 1;
        self.sent_commit = snapshot_index;
    }

    /// Records that an append of `entries` entries (`bytes` bytes in total)
    /// starting at `next` was sent (etcd's `SentEntries`).
    ///
    /// In `Replicate` the entries are in flight: `next` moves past them, the
    /// message joins the inflight window, and the flow pauses if the window
    /// is now full. In `Probe` a non-empty append pauses the flow until the
    /// follower answers.
    ///
    /// # Panics
    /// In `Snapshot` state, where no append may be sent.
    pub fn update_on_entries_send(&mut self, entries: usize, bytes: u64) {
        match self.state {
            ProgressState::Replicate => {
                if entries > 0 {
                    self.next += entries as u64;
                    self.inflights.add(self.next - 1, bytes);
                }
                // A message that fills the window (or is sent while it is
                // already full) counts as a probe: pause until an answer.
                self.msg_app_flow_paused = self.inflights.full();
            }
            ProgressState::Probe => {
                // etcd pauses only on non-empty probes; an empty append
                // (sent to carry a commit index) does not wait for an answer.
                if entries > 0 {
                    self.msg_app_flow_paused = true;
                }
            }
            ProgressState::Snapshot => panic!(
                "sending append in state {} (match={} next={} pending_snapshot={})",
                self.state, self.matched, self.next, self.pending_snapshot
            ),
        }
    }

    /// Whether sending commit index `index` may advance the follower's
    /// commit index: it is above what was sent, and what was sent has not
    /// already reached `next - 1` (the most the follower can commit from
    /// what it was sent).
    pub fn can_bump_commit(&self, index: u64) -> bool {
        index > self.sent_commit && self.sent_commit < self.next - 1
    }

    /// Records that commit index `commit` was sent to the follower.
    pub fn sent_commit(&mut self, commit: u64) {
        self.sent_commit = commit;
    }

    /// Handles an append acknowledgement up to `n`. Returns false (and
    /// changes nothing) if it is stale, i.e. `n <= matched`; otherwise raises
    /// `matched` (and `next` if needed) and unpauses the flow.
    pub fn maybe_update(&mut self, n: u64) -> bool {
        if n <= self.matched {
            return false;
        }
        self.matched = n;
        // Keeps matched < next.
        self.next = self.next.max(n + 1);
        self.msg_app_flow_paused = false;
        true
    }

    /// Handles the rejection of an append at index `rejected`, with the
    /// follower's hint `match_hint` of where its log may match. Returns false
    /// if the rejection is stale; otherwise lowers `next` and returns true.
    ///
    /// In `Replicate` a rejection above `matched` means the stream broke:
    /// `next` falls back to `matched + 1` (the caller then moves to `Probe`).
    /// In `Probe` only a rejection of the one probe in flight (`next - 1`)
    /// counts; `next` drops to the hint (Raft thesis §3.5's optimisation of
    /// skipping a term at a time), but never to or below `matched`.
    pub fn maybe_decr_to(&mut self, rejected: u64, match_hint: u64) -> bool {
        if self.state == ProgressState::Replicate {
            if rejected <= self.matched {
                return false;
            }
            self.next = self.matched + 1;
            // The commit index sent with the rejected entries did not land.
            self.sent_commit = self.sent_commit.min(self.next - 1);
            return true;
        }
        // Probes are sent one at a time, so a rejection of anything but the
        // last probe is a reordered or duplicated message.
        if self.next - 1 != rejected {
            return false;
        }
        self.next = rejected.min(match_hint + 1).max(self.matched + 1);
        self.sent_commit = self.sent_commit.min(self.next - 1);
        self.msg_app_flow_paused = false;
        true
    }

    /// Whether the leader must hold back appends to this follower: a probe
    /// is outstanding, the inflight window is full, or a snapshot is being
    /// sent.
    pub fn is_paused(&self) -> bool {
        match self.state {
            ProgressState::Probe | ProgressState::Replicate => self.msg_app_flow_paused,
            ProgressState::Snapshot => true,
        }
    }
}

impl fmt::Display for Progress {
    /// etcd's format, e.g. `StateReplicate match=5 next=8 inflight=2[full]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} match={} next={}",
            self.state, self.matched, self.next
        )?;
        if self.is_learner {
            f.write_str(" learner")?;
        }
        if self.is_paused() {
            f.write_str(" paused")?;
        }
        if self.pending_snapshot > 0 {
            write!(f, " pendingSnap={}", self.pending_snapshot)?;
        }
        if !self.recent_active {
            f.write_str(" inactive")?;
        }
        let n = self.inflights.count();
        if n > 0 {
            write!(f, " inflight={n}")?;
            if self.inflights.full() {
                f.write_str("[full]")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(state: ProgressState, matched: u64, next: u64) -> Progress {
        let mut pr = Progress::new(next, 256, 0);
        pr.state = state;
        pr.matched = matched;
        pr
    }

    #[test]
    fn new_starts_probing() {
        let pr = Progress::new(7, 4, 100);
        assert_eq!(pr.matched, 0);
        assert_eq!(pr.next, 7);
        assert_eq!(pr.state, ProgressState::Probe);
        assert!(!pr.recent_active);
        assert!(!pr.is_paused());
        assert_eq!(pr.inflights.size(), 4);
        assert_eq!(pr.inflights.max_bytes(), 100);
        assert_eq!(pr.to_string(), "StateProbe match=0 next=7 inactive");
    }

    #[test]
    fn become_probe_from_each_state() {
        // From Replicate: back to matched + 1.
        let mut pr = progress(ProgressState::Replicate, 1, 5);
        pr.inflights.add(4, 10);
        pr.sent_commit = 4;
        pr.become_probe();
        assert_eq!(
            (pr.state, pr.matched, pr.next),
            (ProgressState::Probe, 1, 2)
        );
        assert_eq!(pr.inflights.count(), 0);
        assert_eq!(pr.sent_commit, 1);

        // From Snapshot: after the pending snapshot if it is ahead of match.
        let mut pr = progress(ProgressState::Snapshot, 1, 5);
        pr.pending_snapshot = 10;
        pr.become_probe();
        assert_eq!(
            (pr.state, pr.matched, pr.next),
            (ProgressState::Probe, 1, 11)
        );
        assert_eq!(pr.pending_snapshot, 0);

        // From Snapshot with match already past the snapshot.
        let mut pr = progress(ProgressState::Snapshot, 12, 13);
        pr.pending_snapshot = 10;
        pr.become_probe();
        assert_eq!(pr.next, 13);
    }

    #[test]
    fn become_replicate_and_snapshot() {
        let mut pr = progress(ProgressState::Probe, 1, 5);
        pr.msg_app_flow_paused = true;
        pr.become_replicate();
        assert_eq!(
            (pr.state, pr.matched, pr.next),
            (ProgressState::Replicate, 1, 2)
        );
        assert!(!pr.is_paused());

        let mut pr = progress(ProgressState::Probe, 1, 5);
        pr.become_snapshot(10);
        assert_eq!(pr.state, ProgressState::Snapshot);
        assert_eq!((pr.matched, pr.next, pr.pending_snapshot), (1, 11, 10));
        assert_eq!(pr.sent_commit, 10);
        assert!(pr.is_paused());
        assert_eq!(
            pr.to_string(),
            "StateSnapshot match=1 next=11 paused pendingSnap=10 inactive"
        );
    }

    #[test]
    fn update_on_entries_send_in_replicate() {
        let mut pr = Progress::new(6, 2, 0);
        pr.matched = 5;
        pr.become_replicate();
        assert_eq!(pr.next, 6);
        pr.update_on_entries_send(3, 300);
        assert_eq!(pr.next, 9);
        assert_eq!(pr.inflights.count(), 1);
        assert!(!pr.is_paused());
        // An empty append (commit only) changes nothing.
        pr.update_on_entries_send(0, 0);
        assert_eq!(pr.next, 9);
        assert_eq!(pr.inflights.count(), 1);
        pr.update_on_entries_send(1, 100);
        assert_eq!(pr.next, 10);
        assert!(pr.inflights.full());
        assert!(pr.is_paused());
        pr.recent_active = true;
        assert_eq!(
            pr.to_string(),
            "StateReplicate match=5 next=10 paused inflight=2[full]"
        );
        // An ack frees the window (the caller frees inflights) and unpauses.
        assert!(pr.maybe_update(8));
        pr.inflights.free_le(8);
        assert!(!pr.is_paused());
        assert_eq!(pr.inflights.count(), 1);
    }

    #[test]
    fn update_on_entries_send_in_probe() {
        let mut pr = progress(ProgressState::Probe, 0, 3);
        pr.update_on_entries_send(0, 0);
        assert!(!pr.is_paused(), "an empty probe does not pause");
        pr.update_on_entries_send(2, 20);
        assert!(pr.is_paused());
        assert_eq!(pr.next, 3, "probe does not advance next");
        assert_eq!(pr.inflights.count(), 0);
    }

    #[test]
    #[should_panic(expected = "sending append in state StateSnapshot")]
    fn update_on_entries_send_in_snapshot_panics() {
        let mut pr = progress(ProgressState::Probe, 0, 3);
        pr.become_snapshot(5);
        pr.update_on_entries_send(1, 1);
    }

    #[test]
    fn maybe_update_cases() {
        let prev_m = 3;
        let prev_n = 5;
        for (update, want_m, want_n, want_ok) in [
            (prev_m - 1, prev_m, prev_n, false), // stale
            (prev_m, prev_m, prev_n, false),     // duplicate
            (prev_m + 1, prev_m + 1, prev_n, true),
            (prev_m + 2, prev_m + 2, prev_n + 1, true), // next rises past it
            (prev_n + 1, prev_n + 1, prev_n + 2, true),
        ] {
            let mut pr = progress(ProgressState::Probe, prev_m, prev_n);
            pr.msg_app_flow_paused = true;
            assert_eq!(pr.maybe_update(update), want_ok, "update {update}");
            assert_eq!(pr.matched, want_m, "update {update}");
            assert_eq!(pr.next, want_n, "update {update}");
            assert_eq!(pr.msg_app_flow_paused, !want_ok, "update {update}");
        }
    }

    #[test]
    fn maybe_decr_to_cases() {
        struct Case {
            state: ProgressState,
            m: u64,
            n: u64,
            rejected: u64,
            last: u64,
            want: bool,
            want_n: u64,
        }
        use ProgressState::{Probe, Replicate};
        let cases = [
            // Replicate, stale rejection (at or below match).
            Case {
                state: Replicate,
                m: 5,
                n: 10,
                rejected: 5,
                last: 5,
                want: false,
                want_n: 10,
            },
            Case {
                state: Replicate,
                m: 5,
                n: 10,
                rejected: 4,
                last: 4,
                want: false,
                want_n: 10,
            },
            // Replicate, genuine rejection: back to match + 1.
            Case {
                state: Replicate,
                m: 5,
                n: 10,
                rejected: 9,
                last: 9,
                want: true,
                want_n: 6,
            },
            // Probe, rejection of anything but next - 1 is stale.
            Case {
                state: Probe,
                m: 0,
                n: 10,
                rejected: 5,
                last: 5,
                want: false,
                want_n: 10,
            },
            // Probe, next - 1 rejected: next drops to the hint + 1.
            Case {
                state: Probe,
                m: 0,
                n: 10,
                rejected: 9,
                last: 9,
                want: true,
                want_n: 9,
            },
            Case {
                state: Probe,
                m: 0,
                n: 2,
                rejected: 1,
                last: 1,
                want: true,
                want_n: 1,
            },
            Case {
                state: Probe,
                m: 0,
                n: 1,
                rejected: 0,
                last: 0,
                want: true,
                want_n: 1,
            },
            Case {
                state: Probe,
                m: 0,
                n: 10,
                rejected: 9,
                last: 2,
                want: true,
                want_n: 3,
            },
            Case {
                state: Probe,
                m: 0,
                n: 10,
                rejected: 9,
                last: 0,
                want: true,
                want_n: 1,
            },
            // Never below match + 1.
            Case {
                state: Probe,
                m: 4,
                n: 10,
                rejected: 9,
                last: 0,
                want: true,
                want_n: 5,
            },
        ];
        for (i, c) in cases.iter().enumerate() {
            let mut pr = progress(c.state, c.m, c.n);
            pr.msg_app_flow_paused = c.state == Probe;
            assert_eq!(pr.maybe_decr_to(c.rejected, c.last), c.want, "case {i}");
            assert_eq!(pr.matched, c.m, "case {i}");
            assert_eq!(pr.next, c.want_n, "case {i}");
            if c.want && c.state == Probe {
                assert!(!pr.is_paused(), "case {i}: genuine rejection unpauses");
            }
        }
    }

    #[test]
    fn decreasing_next_pulls_sent_commit_down() {
        let mut pr = progress(ProgressState::Probe, 0, 10);
        pr.sent_commit(9);
        assert!(pr.maybe_decr_to(9, 3));
        assert_eq!(pr.next, 4);
        assert_eq!(pr.sent_commit, 3);

        let mut pr = progress(ProgressState::Replicate, 5, 10);
        pr.sent_commit(9);
        assert!(pr.maybe_decr_to(8, 8));
        assert_eq!(pr.sent_commit, 5);
    }

    #[test]
    fn can_bump_commit() {
        let mut pr = progress(ProgressState::Replicate, 5, 10);
        assert!(pr.can_bump_commit(3));
        pr.sent_commit(3);
        assert!(!pr.can_bump_commit(3), "already sent");
        assert!(pr.can_bump_commit(4));
        pr.sent_commit(9);
        assert!(
            !pr.can_bump_commit(12),
            "the follower cannot commit past next - 1 = 9"
        );
        pr.next = 13;
        assert!(pr.can_bump_commit(12));
    }

    #[test]
    fn is_paused_by_state() {
        for (state, paused, want) in [
            (ProgressState::Probe, false, false),
            (ProgressState::Probe, true, true),
            (ProgressState::Replicate, false, false),
            (ProgressState::Replicate, true, true),
            (ProgressState::Snapshot, false, true),
            (ProgressState::Snapshot, true, true),
        ] {
            let mut pr = progress(state, 0, 1);
            pr.msg_app_flow_paused = paused;
            assert_eq!(pr.is_paused(), want, "{state} paused={paused}");
        }
    }

    #[test]
    fn display_learner() {
        let mut pr = progress(ProgressState::Probe, 2, 3);
        pr.is_learner = true;
        pr.recent_active = true;
        assert_eq!(pr.to_string(), "StateProbe match=2 next=3 learner");
    }
}
