//! Property tests of quorum arithmetic against naive models.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use raft_core::NodeId;
use raft_core::quorum::{Index, JointConfig, MajorityConfig, VoteResult};
use raft_core::tracker::{Progress, ProgressTracker};

/// The naive commit rule: sort the voters' acked indexes (missing = 0) in
/// decreasing order and take the `(n/2 + 1)`-th; `u64::MAX` with no voters.
fn naive_committed(voters: &BTreeSet<NodeId>, acks: &BTreeMap<NodeId, Index>) -> Index {
    if voters.is_empty() {
        return u64::MAX;
    }
    let mut idx: Vec<Index> = voters
        .iter()
        .map(|id| acks.get(id).copied().unwrap_or(0))
        .collect();
    idx.sort_by(|a, b| b.cmp(a));
    idx[voters.len() / 2]
}

/// The naive vote rule, phrased through completions of the missing votes:
/// won if a majority granted already, lost if a majority is out of reach
/// even if every missing vote is granted, pending otherwise.
fn naive_vote(voters: &BTreeSet<NodeId>, votes: &BTreeMap<NodeId, bool>) -> VoteResult {
    let granted_if = |missing_as: bool| {
        voters
            .iter()
            .filter(|id| votes.get(id).copied().unwrap_or(missing_as))
            .count()
    };
    let majority = |n: usize| voters.is_empty() || 2 * n > voters.len();
    if majority(granted_if(false)) {
        VoteResult::Won
    } else if !majority(granted_if(true)) {
        VoteResult::Lost
    } else {
        VoteResult::Pending
    }
}

fn ids() -> impl Strategy<Value = BTreeSet<NodeId>> {
    proptest::collection::btree_set(1u64..=12, 0..=9)
}

fn acks() -> impl Strategy<Value = BTreeMap<NodeId, Index>> {
    // Few distinct values, so that ties are common.
    proptest::collection::btree_map(1u64..=12, prop_oneof![0u64..5, 0u64..1000], 0..=12)
}

fn votes() -> impl Strategy<Value = BTreeMap<NodeId, bool>> {
    proptest::collection::btree_map(1u64..=12, any::<bool>(), 0..=12)
}

proptest! {
    #[test]
    fn majority_committed_matches_naive(voters in ids(), acks in acks()) {
        let c = MajorityConfig::new(voters.iter().copied());
        prop_assert_eq!(c.committed_index(&acks), naive_committed(&voters, &acks));
    }

    #[test]
    fn joint_committed_is_min_of_naive(incoming in ids(), outgoing in ids(), acks in acks()) {
        let c = JointConfig::new_joint(
            MajorityConfig::new(incoming.iter().copied()),
            MajorityConfig::new(outgoing.iter().copied()),
        );
        let want = naive_committed(&incoming, &acks).min(naive_committed(&outgoing, &acks));
        prop_assert_eq!(c.committed_index(&acks), want);
    }

    #[test]
    fn majority_vote_matches_naive(voters in ids(), votes in votes()) {
        let c = MajorityConfig::new(voters.iter().copied());
        prop_assert_eq!(c.vote_result(&votes), naive_vote(&voters, &votes));
        // The closure form agrees with the map form.
        prop_assert_eq!(c.vote_result(&|id: NodeId| votes.get(&id).copied()), c.vote_result(&votes));
    }

    #[test]
    fn joint_vote_matches_naive(incoming in ids(), outgoing in ids(), votes in votes()) {
        let c = JointConfig::new_joint(
            MajorityConfig::new(incoming.iter().copied()),
            MajorityConfig::new(outgoing.iter().copied()),
        );
        let (a, b) = (naive_vote(&incoming, &votes), naive_vote(&outgoing, &votes));
        let want = if a == VoteResult::Lost || b == VoteResult::Lost {
            VoteResult::Lost
        } else if a == VoteResult::Won && b == VoteResult::Won {
            VoteResult::Won
        } else {
            VoteResult::Pending
        };
        prop_assert_eq!(c.vote_result(&votes), want);
    }

    /// The tracker commits what the quorum of its voters' `matched` says;
    /// learners' progress never counts.
    #[test]
    fn tracker_committed_matches_naive(
        voters in proptest::collection::btree_set(1u64..=7, 1..=7),
        matched in proptest::collection::vec(0u64..50, 10),
    ) {
        let mut trk = ProgressTracker::new(10, 0);
        trk.config.voters = JointConfig::new(MajorityConfig::new(voters.iter().copied()));
        let mut acks = BTreeMap::new();
        for id in 1..=10u64 {
            let mut pr = Progress::new(1, 10, 0);
            pr.matched = matched[id as usize - 1];
            pr.next = pr.matched + 1;
            if !voters.contains(&id) {
                pr.is_learner = true;
                trk.config.learners.insert(id);
            }
            acks.insert(id, pr.matched);
            trk.progress.insert(id, pr);
        }
        prop_assert_eq!(trk.committed(), naive_committed(&voters, &acks));
    }
}
