//! The leader's bookkeeping of the cluster: the active configuration, each
//! member's replication [`Progress`], and the votes of an election (etcd's
//! `tracker` package).

mod inflights;
mod progress;
mod state;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fmt::Write as _;

use crate::quorum::{AckedIndexer, Index, JointConfig, VoteResult, fmt_ids};
use crate::types::{ConfState, NodeId};

pub use inflights::Inflights;
pub use progress::Progress;
pub use state::ProgressState;

/// A cluster membership: the (possibly joint) voters and the learners.
///
/// Invariants (checked by [`confchange`](crate::confchange) whenever it
/// produces a `Config`):
/// - `learners` is disjoint from both halves of `voters`;
/// - `learners_next` is a subset of `voters.outgoing`, disjoint from
///   `learners`, and empty unless joint;
/// - `auto_leave` is false unless joint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// The voters; joint while changing membership.
    pub voters: JointConfig,
    /// Members that receive the log but do not vote.
    pub learners: BTreeSet<NodeId>,
    /// Voters of the outgoing configuration that are being demoted: they
    /// become learners when the joint configuration is left. They cannot be
    /// in `learners` before that, since a node is never both a voter and a
    /// learner (etcd's `LearnersNext`).
    pub learners_next: BTreeSet<NodeId>,
    /// Whether the leader leaves the joint configuration on its own once it
    /// is committed (Raft thesis §4.3: the joint configuration is only a
    /// step towards `voters.incoming`).
    pub auto_leave: bool,
}

impl Config {
    /// The configuration as a [`ConfState`], every list sorted.
    pub fn conf_state(&self) -> ConfState {
        ConfState {
            voters: self.voters.incoming.to_vec(),
            learners: self.learners.iter().copied().collect(),
            voters_outgoing: self.voters.outgoing.to_vec(),
            learners_next: self.learners_next.iter().copied().collect(),
            auto_leave: self.auto_leave,
        }
    }
}

impl fmt::Display for Config {
    /// etcd's format: `voters=(1 2 3)&&(1 2 4) learners=(5) learners_next=(4)
    /// autoleave`, omitting empty learner sets and a false `autoleave`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "voters={}", self.voters)?;
        if !self.learners.is_empty() {
            f.write_str(" learners=")?;
            fmt_ids(f, self.learners.iter().copied())?;
        }
        if !self.learners_next.is_empty() {
            f.write_str(" learners_next=")?;
            fmt_ids(f, self.learners_next.iter().copied())?;
        }
        if self.auto_leave {
            f.write_str(" autoleave")?;
        }
        Ok(())
    }
}

/// The progress of every member (voters and learners), by id.
pub type ProgressMap = BTreeMap<NodeId, Progress>;

impl AckedIndexer for ProgressMap {
    /// A member's acked index is its `matched`.
    fn acked_index(&self, voter: NodeId) -> Option<Index> {
        self.get(&voter).map(|pr| pr.matched)
    }
}

/// Renders a progress map one member per line in id order, as
/// `1: StateProbe match=0 next=1` (etcd's `ProgressMap.String`).
pub fn describe_progress(progress: &ProgressMap) -> String {
    let mut out = String::new();
    for (id, pr) in progress {
        writeln!(out, "{id}: {pr}").expect("writing to a String");
    }
    out
}

/// Tracks the configuration, the progress of each member and the votes of
/// the current election (etcd's `ProgressTracker`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgressTracker {
    /// The active configuration.
    pub config: Config,
    /// The progress of each voter and learner.
    // Invariant: holds exactly the ids of `config.voters`, `config.learners`
    // and `config.learners_next` (confchange maintains it).
    pub progress: ProgressMap,
    /// The votes received in the current election: granted or rejected.
    pub votes: BTreeMap<NodeId, bool>,
    /// The inflight window (in messages) of new progresses.
    pub max_inflight: usize,
    /// The inflight byte limit of new progresses (0 for none).
    pub max_inflight_bytes: u64,
}

impl ProgressTracker {
    /// An empty tracker (no members) whose progresses will get inflight
    /// windows of `max_inflight` messages and `max_inflight_bytes` bytes.
    pub fn new(max_inflight: usize, max_inflight_bytes: u64) -> Self {
        ProgressTracker {
            config: Config::default(),
            progress: ProgressMap::new(),
            votes: BTreeMap::new(),
            max_inflight,
            max_inflight_bytes,
        }
    }

    /// The active configuration as a [`ConfState`].
    pub fn conf_state(&self) -> ConfState {
        self.config.conf_state()
    }

    /// Whether there is exactly one voter and the configuration is not joint
    /// (a single node commits and elects itself alone).
    pub fn is_singleton(&self) -> bool {
        self.config.voters.incoming.len() == 1 && !self.config.voters.is_joint()
    }

    /// The largest index acknowledged (`matched`) by a quorum of the voters,
    /// a quorum of each half when joint. `u64::MAX` with no voters at all
    /// (see [`MajorityConfig::committed_index`]).
    ///
    /// Allocation-free for up to seven voters per half.
    ///
    /// [`MajorityConfig::committed_index`]: crate::quorum::MajorityConfig::committed_index
    pub fn committed(&self) -> u64 {
        self.config.voters.committed_index(&self.progress)
    }

    /// Calls `f` on every member's progress, in increasing id order.
    pub fn visit(&mut self, mut f: impl FnMut(NodeId, &mut Progress)) {
        for (&id, pr) in &mut self.progress {
            f(id, pr);
        }
    }

    /// Whether a quorum of voters has been `recent_active` (etcd's
    /// `QuorumActive`, used by CheckQuorum). The leader is expected to have
    /// marked its own progress active.
    pub fn quorum_active(&self) -> bool {
        let active = |id: NodeId| {
            self.progress
                .get(&id)
                .filter(|pr| !pr.is_learner)
                .map(|pr| pr.recent_active)
        };
        self.config.voters.vote_result(&active) == VoteResult::Won
    }

    /// The voters of either half, sorted.
    pub fn voter_nodes(&self) -> Vec<NodeId> {
        self.config.voters.ids().collect()
    }

    /// The learners, sorted (without `learners_next`, who still vote in the
    /// outgoing half).
    pub fn learner_nodes(&self) -> Vec<NodeId> {
        self.config.learners.iter().copied().collect()
    }

    /// Forgets the votes of the previous election.
    pub fn reset_votes(&mut self) {
        self.votes.clear();
    }

    /// Records `id`'s vote. Only the first vote of a node counts: a node
    /// votes at most once per term (Raft thesis §3.4), so a later differing
    /// answer is a duplicate of an older message.
    pub fn record_vote(&mut self, id: NodeId, granted: bool) {
        self.votes.entry(id).or_insert(granted);
    }

    /// The granted and rejected votes among the current voters, and the
    /// election's outcome so far.
    pub fn tally_votes(&self) -> (usize, usize, VoteResult) {
        let (mut granted, mut rejected) = (0, 0);
        for id in self.config.voters.ids() {
            match self.votes.get(&id) {
                Some(true) => granted += 1,
                Some(false) => rejected += 1,
                None => {}
            }
        }
        (granted, rejected, self.vote_result(&self.votes))
    }

    /// The outcome of an election with the given votes under the active
    /// configuration.
    pub fn vote_result(&self, votes: &BTreeMap<NodeId, bool>) -> VoteResult {
        self.config.voters.vote_result(votes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quorum::MajorityConfig;

    fn tracker(incoming: &[NodeId], outgoing: &[NodeId], learners: &[NodeId]) -> ProgressTracker {
        let mut trk = ProgressTracker::new(10, 0);
        trk.config.voters = JointConfig::new_joint(
            MajorityConfig::new(incoming.iter().copied()),
            MajorityConfig::new(outgoing.iter().copied()),
        );
        trk.config.learners = learners.iter().copied().collect();
        for id in trk.config.voters.ids().collect::<Vec<_>>() {
            trk.progress.insert(id, Progress::new(1, 10, 0));
        }
        for &id in learners {
            let mut pr = Progress::new(1, 10, 0);
            pr.is_learner = true;
            trk.progress.insert(id, pr);
        }
        trk
    }

    #[test]
    fn committed_uses_matched_of_voters_only() {
        let mut trk = tracker(&[1, 2, 3], &[], &[4]);
        for (id, m) in [(1, 10), (2, 8), (3, 3), (4, 100)] {
            trk.progress.get_mut(&id).unwrap().matched = m;
        }
        assert_eq!(trk.committed(), 8);

        let mut trk = tracker(&[1, 2, 3], &[3, 4, 5], &[]);
        for (id, m) in [(1, 10), (2, 8), (3, 3), (4, 2), (5, 9)] {
            trk.progress.get_mut(&id).unwrap().matched = m;
        }
        // incoming: 8, outgoing: 3.
        assert_eq!(trk.committed(), 3);
        assert_eq!(
            trk.config.voters.describe(&trk.progress),
            concat!(
                "         idx\n",
                "xxxx>     10    (id=1)\n",
                "xx>        8    (id=2)\n",
                "x>         3    (id=3)\n",
                ">          2    (id=4)\n",
                "xxx>       9    (id=5)\n",
            )
        );
    }

    #[test]
    fn singleton() {
        assert!(tracker(&[1], &[], &[2]).is_singleton());
        assert!(!tracker(&[1, 2], &[], &[]).is_singleton());
        assert!(!tracker(&[1], &[1, 2], &[]).is_singleton());
        assert!(!tracker(&[], &[], &[]).is_singleton());
    }

    #[test]
    fn votes_first_wins_and_tally_counts_voters_only() {
        let mut trk = tracker(&[1, 2, 3, 4, 5], &[], &[6]);
        trk.record_vote(1, true);
        trk.record_vote(1, false);
        trk.record_vote(2, false);
        trk.record_vote(6, true); // a learner's vote does not count
        trk.record_vote(9, true); // nor a stranger's
        assert_eq!(trk.tally_votes(), (1, 1, VoteResult::Pending));
        trk.record_vote(3, true);
        trk.record_vote(4, true);
        assert_eq!(trk.tally_votes(), (3, 1, VoteResult::Won));
        trk.reset_votes();
        assert_eq!(trk.tally_votes(), (0, 0, VoteResult::Pending));
        trk.record_vote(1, false);
        trk.record_vote(2, false);
        trk.record_vote(3, false);
        assert_eq!(trk.tally_votes(), (0, 3, VoteResult::Lost));
    }

    #[test]
    fn tally_votes_joint() {
        let mut trk = tracker(&[1, 2, 3], &[4, 5, 6], &[]);
        for id in [1, 2, 4] {
            trk.record_vote(id, true);
        }
        assert_eq!(trk.tally_votes(), (3, 0, VoteResult::Pending));
        trk.record_vote(5, false);
        trk.record_vote(6, false);
        assert_eq!(trk.tally_votes(), (3, 2, VoteResult::Lost));
    }

    #[test]
    fn quorum_active_counts_recently_active_voters() {
        let mut trk = tracker(&[1, 2, 3], &[], &[4, 5]);
        trk.progress.get_mut(&1).unwrap().recent_active = true;
        for id in [4, 5] {
            trk.progress.get_mut(&id).unwrap().recent_active = true;
        }
        assert!(!trk.quorum_active(), "learners do not count");
        trk.progress.get_mut(&3).unwrap().recent_active = true;
        assert!(trk.quorum_active());

        let mut trk = tracker(&[1, 2, 3], &[3, 4, 5], &[]);
        for id in [1, 2] {
            trk.progress.get_mut(&id).unwrap().recent_active = true;
        }
        assert!(!trk.quorum_active(), "outgoing half not active");
        trk.progress.get_mut(&4).unwrap().recent_active = true;
        assert!(!trk.quorum_active());
        trk.progress.get_mut(&5).unwrap().recent_active = true;
        assert!(trk.quorum_active());
    }

    #[test]
    fn visit_in_id_order() {
        let mut trk = tracker(&[3, 1, 2], &[], &[7]);
        let mut seen = Vec::new();
        trk.visit(|id, pr| {
            seen.push(id);
            pr.recent_active = true;
        });
        assert_eq!(seen, vec![1, 2, 3, 7]);
        assert!(trk.progress.values().all(|pr| pr.recent_active));
    }

    #[test]
    fn nodes_conf_state_and_display() {
        let mut trk = tracker(&[3, 1, 2], &[1, 2, 4], &[6, 5]);
        trk.config.learners_next.insert(4);
        trk.config.auto_leave = true;
        assert_eq!(trk.voter_nodes(), vec![1, 2, 3, 4]);
        assert_eq!(trk.learner_nodes(), vec![5, 6]);
        assert_eq!(
            trk.conf_state(),
            ConfState {
                voters: vec![1, 2, 3],
                learners: vec![5, 6],
                voters_outgoing: vec![1, 2, 4],
                learners_next: vec![4],
                auto_leave: true,
            }
        );
        assert_eq!(
            trk.config.to_string(),
            "voters=(1 2 3)&&(1 2 4) learners=(5 6) learners_next=(4) autoleave"
        );
        assert_eq!(Config::default().to_string(), "voters=()");
        assert_eq!(
            describe_progress(&trk.progress).lines().next(),
            Some("1: StateProbe match=0 next=1 inactive")
        );
    }
}
