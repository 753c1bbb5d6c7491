use std::collections::BTreeSet;
use std::fmt;
use std::fmt::Write as _;

use super::{AckedIndexer, Index, VoteLookup, VoteResult, fmt_ids};
use crate::types::NodeId;

/// Voters counted in a stack buffer by [`MajorityConfig::committed_index`];
/// larger configurations fall back to a heap buffer. Seven covers every
/// cluster size used in practice.
const STACK_VOTERS: usize = 7;

/// A set of voters that decides by simple majority.
///
/// Ids are kept in a `BTreeSet`, so every iteration (and thus every output
/// and every decision that depends on order) is deterministic.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct MajorityConfig {
    voters: BTreeSet<NodeId>,
}

impl MajorityConfig {
    /// A configuration of the given voters (duplicates are ignored).
    pub fn new(voters: impl IntoIterator<Item = NodeId>) -> Self {
        MajorityConfig {
            voters: voters.into_iter().collect(),
        }
    }

    /// The voters, in increasing id order.
    pub fn ids(&self) -> impl DoubleEndedIterator<Item = NodeId> + ExactSizeIterator + '_ {
        self.voters.iter().copied()
    }

    /// The voters as a sorted `Vec` (etcd's `Slice`).
    pub fn to_vec(&self) -> Vec<NodeId> {
        self.ids().collect()
    }

    /// The voters as a set.
    pub fn as_set(&self) -> &BTreeSet<NodeId> {
        &self.voters
    }

    /// Whether `id` is a voter.
    pub fn contains(&self, id: NodeId) -> bool {
        self.voters.contains(&id)
    }

    /// The number of voters.
    pub fn len(&self) -> usize {
        self.voters.len()
    }

    /// Whether there are no voters.
    pub fn is_empty(&self) -> bool {
        self.voters.is_empty()
    }

    /// Adds a voter; returns whether it was new.
    pub fn insert(&mut self, id: NodeId) -> bool {
        self.voters.insert(id)
    }

    /// Removes a voter; returns whether it was present.
    pub fn remove(&mut self, id: NodeId) -> bool {
        self.voters.remove(&id)
    }

    /// Removes all voters.
    pub fn clear(&mut self) {
        self.voters.clear();
    }

    /// The largest index acknowledged by a majority of the voters: with the
    /// acked indexes sorted in decreasing order, the `(n/2 + 1)`-th one.
    ///
    /// A voter the indexer knows nothing about counts as having acked 0. An
    /// empty configuration returns `u64::MAX`, so that it never holds back
    /// the minimum taken over the two halves of a [`JointConfig`] whose
    /// outgoing half is empty. A caller with a genuinely empty configuration
    /// must not treat `u64::MAX` as committed (etcd's `maybeCommit` rejects
    /// it because no entry has that index).
    ///
    /// Allocation-free for up to seven voters; this runs on every append
    /// acknowledgement the leader receives.
    ///
    /// [`JointConfig`]: super::JointConfig
    pub fn committed_index(&self, acked: &(impl AckedIndexer + ?Sized)) -> Index {
        let n = self.voters.len();
        if n == 0 {
            return Index::MAX;
        }
        let mut stack = [0 as Index; STACK_VOTERS];
        let mut heap = Vec::new();
        let srt: &mut [Index] = if n <= STACK_VOTERS {
            &mut stack[..n]
        } else {
            heap.resize(n, 0);
            &mut heap
        };
        for (slot, &id) in srt.iter_mut().zip(&self.voters) {
            *slot = acked.acked_index(id).unwrap_or(0);
        }
        // Small-slice unstable sort is an in-place insertion sort: no
        // allocation.
        srt.sort_unstable();
        // Ascending order: the elements at positions >= n - q are acked by at
        // least q = n/2 + 1 voters, so the one at n - q is the largest index
        // a quorum has reached.
        srt[n - (n / 2 + 1)]
    }

    /// Whether the votes cast so far win, lose, or leave the election open.
    ///
    /// Votes by non-voters are ignored. An empty configuration wins: this
    /// lets a joint configuration whose outgoing half is empty decide on its
    /// incoming half alone.
    ///
    /// `votes` is any [`VoteLookup`]: a `&BTreeMap<NodeId, bool>` or a
    /// closure `&|id| -> Option<bool>`.
    pub fn vote_result(&self, votes: &(impl VoteLookup + ?Sized)) -> VoteResult {
        if self.voters.is_empty() {
            return VoteResult::Won;
        }
        let (mut granted, mut missing) = (0, 0);
        for &id in &self.voters {
            match votes.vote(id) {
                Some(true) => granted += 1,
                Some(false) => {}
                None => missing += 1,
            }
        }
        let quorum = self.voters.len() / 2 + 1;
        if granted >= quorum {
            VoteResult::Won
        } else if granted + missing >= quorum {
            VoteResult::Pending
        } else {
            VoteResult::Lost
        }
    }

    /// Renders the acked index of each voter as a table for tests, in the
    /// style of etcd's `Describe`:
    ///
    /// ```text
    ///        idx
    /// x>     100    (id=1)
    /// xx>    101    (id=2)
    /// >       99    (id=3)
    /// ?        0    (id=4)
    /// ```
    ///
    /// The bar of a voter has one `x` per voter with a strictly smaller acked
    /// index (so equal indexes get equal bars); `?` marks a voter the indexer
    /// knows nothing about.
    pub fn describe(&self, acked: &(impl AckedIndexer + ?Sized)) -> String {
        if self.voters.is_empty() {
            return "<empty majority quorum>".to_string();
        }
        let n = self.voters.len();
        let info: Vec<(NodeId, Option<Index>)> =
            self.ids().map(|id| (id, acked.acked_index(id))).collect();
        let mut out = format!("{}    idx\n", " ".repeat(n));
        for &(id, idx) in &info {
            let shown = idx.unwrap_or(0);
            match idx {
                None => {
                    out.push('?');
                    out.push_str(&" ".repeat(n));
                }
                Some(_) => {
                    let bar = info
                        .iter()
                        .filter(|(_, other)| other.unwrap_or(0) < shown)
                        .count();
                    out.push_str(&"x".repeat(bar));
                    out.push('>');
                    out.push_str(&" ".repeat(n - bar));
                }
            }
            writeln!(out, " {shown:>5}    (id={id})").expect("writing to a String");
        }
        out
    }
}

impl fmt::Display for MajorityConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_ids(f, self.ids())
    }
}

impl FromIterator<NodeId> for MajorityConfig {
    fn from_iter<I: IntoIterator<Item = NodeId>>(iter: I) -> Self {
        MajorityConfig::new(iter)
    }
}

impl<'a> IntoIterator for &'a MajorityConfig {
    type Item = NodeId;
    type IntoIter = std::iter::Copied<std::collections::btree_set::Iter<'a, NodeId>>;

    fn into_iter(self) -> Self::IntoIter {
        self.voters.iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn acks(pairs: &[(NodeId, Index)]) -> BTreeMap<NodeId, Index> {
        pairs.iter().copied().collect()
    }

    fn votes(pairs: &[(NodeId, bool)]) -> BTreeMap<NodeId, bool> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn committed_index_of_empty_config_is_max() {
        let c = MajorityConfig::default();
        assert_eq!(c.committed_index(&acks(&[(1, 5)])), u64::MAX);
    }

    #[test]
    fn committed_index_single_voter() {
        let c = MajorityConfig::new([1]);
        assert_eq!(c.committed_index(&acks(&[])), 0);
        assert_eq!(c.committed_index(&acks(&[(1, 12)])), 12);
        // Acks of non-voters do not count.
        assert_eq!(c.committed_index(&acks(&[(2, 12)])), 0);
    }

    #[test]
    fn committed_index_odd_and_even_sizes() {
        let c = MajorityConfig::new([1, 2, 3]);
        assert_eq!(c.committed_index(&acks(&[(1, 12), (2, 5), (3, 7)])), 7);
        assert_eq!(c.committed_index(&acks(&[(1, 12), (2, 5)])), 5);
        assert_eq!(c.committed_index(&acks(&[(1, 12)])), 0);

        // Four voters need three acks.
        let c = MajorityConfig::new([1, 2, 3, 4]);
        assert_eq!(
            c.committed_index(&acks(&[(1, 10), (2, 20), (3, 30), (4, 40)])),
            20
        );
        assert_eq!(c.committed_index(&acks(&[(1, 10), (2, 20), (4, 40)])), 10);

        let c = MajorityConfig::new([1, 2, 3, 4, 5]);
        assert_eq!(
            c.committed_index(&acks(&[(1, 1), (2, 2), (3, 3), (4, 4), (5, 5)])),
            3
        );
        assert_eq!(c.committed_index(&acks(&[(1, 9), (5, 9), (3, 9)])), 9);
        assert_eq!(c.committed_index(&acks(&[(1, 9), (5, 9)])), 0);
    }

    #[test]
    fn committed_index_beyond_stack_buffer() {
        let c = MajorityConfig::new(1..=9);
        let a: BTreeMap<_, _> = (1..=9).map(|id| (id, id * 10)).collect();
        // Sorted descending: 90 80 70 60 50 ...; the 5th is 50.
        assert_eq!(c.committed_index(&a), 50);
    }

    #[test]
    fn vote_result_cases() {
        let empty = MajorityConfig::default();
        assert_eq!(empty.vote_result(&votes(&[])), VoteResult::Won);
        assert_eq!(empty.vote_result(&votes(&[(1, false)])), VoteResult::Won);

        let c = MajorityConfig::new([1, 2, 3]);
        assert_eq!(c.vote_result(&votes(&[])), VoteResult::Pending);
        assert_eq!(c.vote_result(&votes(&[(1, true)])), VoteResult::Pending);
        assert_eq!(
            c.vote_result(&votes(&[(1, true), (2, false)])),
            VoteResult::Pending
        );
        assert_eq!(
            c.vote_result(&votes(&[(1, true), (2, true)])),
            VoteResult::Won
        );
        assert_eq!(
            c.vote_result(&votes(&[(1, false), (2, false)])),
            VoteResult::Lost
        );
        // Votes from non-voters are ignored.
        assert_eq!(
            c.vote_result(&votes(&[(1, true), (4, true), (5, true)])),
            VoteResult::Pending
        );

        let c = MajorityConfig::new([1, 2, 3, 4]);
        assert_eq!(
            c.vote_result(&votes(&[(1, true), (2, true)])),
            VoteResult::Pending
        );
        assert_eq!(
            c.vote_result(&votes(&[(1, false), (2, false)])),
            VoteResult::Lost
        );
        assert_eq!(
            c.vote_result(&votes(&[(1, true), (2, true), (3, true)])),
            VoteResult::Won
        );
    }

    #[test]
    fn vote_result_accepts_a_closure() {
        let c = MajorityConfig::new([1, 2, 3]);
        assert_eq!(c.vote_result(&|id: NodeId| Some(id != 3)), VoteResult::Won);
        assert_eq!(c.vote_result(&|id: NodeId| Some(id == 3)), VoteResult::Lost);
        assert_eq!(c.vote_result(&|_: NodeId| None), VoteResult::Pending);
    }

    #[test]
    fn set_operations_and_display() {
        let mut c = MajorityConfig::new([3, 1, 2, 1]);
        assert_eq!(c.len(), 3);
        assert_eq!(c.to_string(), "(1 2 3)");
        assert!(c.insert(7));
        assert!(!c.insert(7));
        assert!(c.remove(2));
        assert!(!c.contains(2));
        assert_eq!(c.to_vec(), vec![1, 3, 7]);
        assert_eq!((&c).into_iter().rev().collect::<Vec<_>>(), vec![7, 3, 1]);
        c.clear();
        assert!(c.is_empty());
        assert_eq!(c.to_string(), "()");
    }

    #[test]
    fn describe_renders_bars() {
        let c = MajorityConfig::new([1, 2, 3, 4]);
        let got = c.describe(&acks(&[(1, 100), (2, 101), (3, 99)]));
        let want = concat!(
            "        idx\n",
            "xx>     100    (id=1)\n",
            "xxx>    101    (id=2)\n",
            "x>       99    (id=3)\n",
            "?         0    (id=4)\n",
        );
        assert_eq!(got, want);
        assert_eq!(
            MajorityConfig::default().describe(&acks(&[])),
            "<empty majority quorum>"
        );
    }
}
