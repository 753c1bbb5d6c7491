//! Quorum arithmetic: which index a set of voters has committed, and whether
//! an election is won (etcd's `quorum` package).
//!
//! This module is pure: it knows nothing about progress tracking or the raft
//! state machine. Acknowledged indexes and votes come in through the small
//! [`AckedIndexer`] and [`VoteLookup`] traits, so the tracker can answer from
//! its progress map without building an intermediate collection.
//!
//! A [`MajorityConfig`] is a plain majority quorum; a [`JointConfig`] is the
//! pair of majorities used during joint consensus (Raft thesis §4.3), where a
//! decision needs a majority of *each* half.

mod joint;
mod majority;

use std::collections::BTreeMap;
use std::fmt;

use crate::types::NodeId;

pub use joint::JointConfig;
pub use majority::MajorityConfig;

/// A raft log index, as seen by quorum computations.
pub type Index = u64;

/// Answers which log index a voter has acknowledged.
pub trait AckedIndexer {
    /// The highest index `voter` is known to have durably appended, or `None`
    /// if nothing is known about `voter` (it counts as having acked 0).
    fn acked_index(&self, voter: NodeId) -> Option<Index>;
}

impl AckedIndexer for BTreeMap<NodeId, Index> {
    fn acked_index(&self, voter: NodeId) -> Option<Index> {
        self.get(&voter).copied()
    }
}

/// Answers how a voter voted: `Some(true)` granted, `Some(false)` rejected,
/// `None` not (yet) voted.
///
/// Implemented for `BTreeMap<NodeId, bool>` (the tracker's vote record) and
/// for any `Fn(NodeId) -> Option<bool>`, so a caller can compute votes on the
/// fly without allocating (the tracker does this for `quorum_active`).
pub trait VoteLookup {
    /// The vote cast by `voter`, if any.
    fn vote(&self, voter: NodeId) -> Option<bool>;
}

impl VoteLookup for BTreeMap<NodeId, bool> {
    fn vote(&self, voter: NodeId) -> Option<bool> {
        self.get(&voter).copied()
    }
}

impl<F> VoteLookup for F
where
    F: Fn(NodeId) -> Option<bool> + ?Sized,
{
    fn vote(&self, voter: NodeId) -> Option<bool> {
        self(voter)
    }
}

/// The outcome of an election, as far as the votes received so far tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VoteResult {
    /// The outcome depends on votes not yet received.
    Pending,
    /// Enough rejections were received that the election cannot be won.
    Lost,
    /// A quorum granted its vote.
    Won,
}

impl fmt::Display for VoteResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VoteResult::Pending => "VotePending",
            VoteResult::Lost => "VoteLost",
            VoteResult::Won => "VoteWon",
        })
    }
}

/// Writes ids as `(1 2 3)`, the notation etcd uses for quorums and learner
/// sets in test output.
pub(crate) fn fmt_ids(
    f: &mut fmt::Formatter<'_>,
    ids: impl IntoIterator<Item = NodeId>,
) -> fmt::Result {
    f.write_str("(")?;
    for (i, id) in ids.into_iter().enumerate() {
        if i > 0 {
            f.write_str(" ")?;
        }
        write!(f, "{id}")?;
    }
    f.write_str(")")
}
