use std::fmt;

/// How the leader replicates to a follower (etcd's `StateType`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ProgressState {
    /// The leader does not know where the follower's log matches its own: it
    /// sends at most one append per heartbeat interval and waits for the
    /// answer, backing `next` off on rejections (Raft thesis §3.5).
    #[default]
    Probe,
    /// The follower's log is known to match up to `matched`: the leader
    /// streams appends optimistically, bounded by the inflight window.
    Replicate,
    /// The follower needs a snapshot (its next entry is compacted away); the
    /// leader sends nothing else until the snapshot is reported done.
    Snapshot,
}

impl fmt::Display for ProgressState {
    /// The etcd names (`StateProbe`, `StateReplicate`, `StateSnapshot`), so
    /// that test output reads like etcd's.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProgressState::Probe => "StateProbe",
            ProgressState::Replicate => "StateReplicate",
            ProgressState::Snapshot => "StateSnapshot",
        })
    }
}
