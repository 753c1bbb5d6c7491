use std::fmt;

use super::{AckedIndexer, Index, MajorityConfig, VoteLookup, VoteResult};
use crate::types::NodeId;

/// The configuration used during joint consensus (Raft thesis §4.3): a
/// decision (commit or election) needs a majority of the `incoming` voters
/// *and* a majority of the `outgoing` voters.
///
/// Outside a joint configuration `outgoing` is empty, and an empty majority
/// never holds a decision back, so a non-joint `JointConfig` behaves exactly
/// like its `incoming` half.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct JointConfig {
    /// The configuration being moved to (the only one when not joint).
    pub incoming: MajorityConfig,
    /// The configuration being moved away from; empty when not joint.
    pub outgoing: MajorityConfig,
}

impl JointConfig {
    /// A non-joint configuration.
    pub fn new(incoming: MajorityConfig) -> Self {
        JointConfig {
            incoming,
            outgoing: MajorityConfig::default(),
        }
    }

    /// A joint configuration of both halves.
    pub fn new_joint(incoming: MajorityConfig, outgoing: MajorityConfig) -> Self {
        JointConfig { incoming, outgoing }
    }

    /// Whether this is a joint configuration (the outgoing half has voters).
    pub fn is_joint(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// Whether neither half has any voter.
    pub fn is_empty(&self) -> bool {
        self.incoming.is_empty() && self.outgoing.is_empty()
    }

    /// The voters of either half, each once, in increasing id order.
    pub fn ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.incoming
            .as_set()
            .union(self.outgoing.as_set())
            .copied()
    }

    /// Whether `id` is a voter in either half.
    pub fn contains(&self, id: NodeId) -> bool {
        self.incoming.contains(id) || self.outgoing.contains(id)
    }

    /// The largest index committed by both halves: the minimum of their
    /// [`MajorityConfig::committed_index`]. `u64::MAX` if both are empty.
    pub fn committed_index(&self, acked: &(impl AckedIndexer + ?Sized)) -> Index {
        let incoming = self.incoming.committed_index(acked);
        if self.outgoing.is_empty() {
            return incoming;
        }
        incoming.min(self.outgoing.committed_index(acked))
    }

    /// The election outcome under joint consensus: won only if both halves
    /// win, lost as soon as either half loses, pending otherwise.
    pub fn vote_result(&self, votes: &(impl VoteLookup + ?Sized)) -> VoteResult {
        let r1 = self.incoming.vote_result(votes);
        let r2 = self.outgoing.vote_result(votes);
        match (r1, r2) {
            (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
            (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
            _ => VoteResult::Pending,
        }
    }

    /// [`MajorityConfig::describe`] of the union of both halves.
    pub fn describe(&self, acked: &(impl AckedIndexer + ?Sized)) -> String {
        MajorityConfig::new(self.ids()).describe(acked)
    }
}

impl From<MajorityConfig> for JointConfig {
    fn from(incoming: MajorityConfig) -> Self {
        JointConfig::new(incoming)
    }
}

impl fmt::Display for JointConfig {
    /// `(1 2 3)` when not joint, `(1 2 3)&&(1 2 4)` when joint.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.incoming)?;
        if self.is_joint() {
            write!(f, "&&{}", self.outgoing)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn joint(incoming: &[NodeId], outgoing: &[NodeId]) -> JointConfig {
        JointConfig::new_joint(
            MajorityConfig::new(incoming.iter().copied()),
            MajorityConfig::new(outgoing.iter().copied()),
        )
    }

    fn acks(pairs: &[(NodeId, Index)]) -> BTreeMap<NodeId, Index> {
        pairs.iter().copied().collect()
    }

    fn votes(pairs: &[(NodeId, bool)]) -> BTreeMap<NodeId, bool> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn committed_index_is_min_of_halves() {
        let c = joint(&[1, 2, 3], &[]);
        assert!(!c.is_joint());
        assert_eq!(c.committed_index(&acks(&[(1, 5), (2, 7), (3, 9)])), 7);

        // (1 2 3)&&(3 4 5): incoming commits 7, outgoing commits 2.
        let c = joint(&[1, 2, 3], &[3, 4, 5]);
        assert!(c.is_joint());
        let a = acks(&[(1, 5), (2, 7), (3, 9), (4, 2), (5, 1)]);
        assert_eq!(c.committed_index(&a), 2);
        // Outgoing catches up: now incoming is the bottleneck.
        let a = acks(&[(1, 5), (2, 7), (3, 9), (4, 20), (5, 20)]);
        assert_eq!(c.committed_index(&a), 7);

        // Overlapping halves: the same acks serve both.
        let c = joint(&[1, 2, 3], &[1, 2, 4]);
        let a = acks(&[(1, 10), (2, 10), (3, 1), (4, 1)]);
        assert_eq!(c.committed_index(&a), 10);
    }

    #[test]
    fn committed_index_with_empty_halves() {
        assert_eq!(joint(&[], &[]).committed_index(&acks(&[])), u64::MAX);
        // An empty incoming half with a non-empty outgoing one defers to the
        // outgoing half (etcd allows constructing this in tests).
        let c = joint(&[], &[1, 2]);
        assert_eq!(c.committed_index(&acks(&[(1, 3), (2, 4)])), 3);
    }

    #[test]
    fn vote_result_needs_both_halves() {
        let c = joint(&[1, 2, 3], &[3, 4, 5]);
        assert_eq!(c.vote_result(&votes(&[])), VoteResult::Pending);
        // Incoming won, outgoing pending.
        assert_eq!(
            c.vote_result(&votes(&[(1, true), (2, true)])),
            VoteResult::Pending
        );
        // Both won through the shared voter 3.
        assert_eq!(
            c.vote_result(&votes(&[(1, true), (3, true), (4, true)])),
            VoteResult::Won
        );
        // Outgoing lost: lost even though incoming won.
        assert_eq!(
            c.vote_result(&votes(&[(1, true), (2, true), (4, false), (5, false)])),
            VoteResult::Lost
        );
        // Incoming lost, outgoing pending.
        assert_eq!(
            c.vote_result(&votes(&[(1, false), (2, false)])),
            VoteResult::Lost
        );

        assert_eq!(joint(&[], &[]).vote_result(&votes(&[])), VoteResult::Won);
        assert_eq!(
            joint(&[1], &[]).vote_result(&votes(&[(1, true)])),
            VoteResult::Won
        );
        assert_eq!(
            joint(&[1], &[]).vote_result(&votes(&[(1, false)])),
            VoteResult::Lost
        );
    }

    #[test]
    fn ids_and_display() {
        let c = joint(&[1, 2, 3], &[1, 2, 4]);
        assert_eq!(c.ids().collect::<Vec<_>>(), vec![1, 2, 3, 4]);
        assert!(c.contains(4));
        assert!(!c.contains(5));
        assert_eq!(c.to_string(), "(1 2 3)&&(1 2 4)");
        assert_eq!(joint(&[1, 2, 3], &[]).to_string(), "(1 2 3)");
        assert_eq!(joint(&[], &[]).to_string(), "()");
        assert!(joint(&[], &[]).is_empty());
    }
}
