use std::collections::BTreeSet;

use crate::tracker::{Config, Progress, ProgressMap, ProgressTracker};
use crate::types::{ConfChangeSingle, ConfChangeType, NONE, NodeId};

/// Computes the result of configuration changes against a tracker, without
/// modifying it (etcd's `Changer`).
///
/// Every method returns the new `(Config, ProgressMap)` or a human-readable
/// reason the change is invalid; the tracker's own configuration must satisfy
/// the [`Config`] invariants or an error is returned.
#[derive(Clone, Copy, Debug)]
pub struct Changer<'a> {
    /// The tracker whose configuration the changes start from.
    pub tracker: &'a ProgressTracker,
    /// The leader's (or the applying node's) last log index: a node added by
    /// a change is first probed there.
    pub last_index: u64,
}

/// The working copy a change is applied to.
type Working = (Config, ProgressMap);

impl Changer<'_> {
    /// Enters a joint configuration: the current voters become the outgoing
    /// half, and `ccs` are applied to the incoming half. With `auto_leave`
    /// the leader will leave the joint configuration on its own once it is
    /// committed.
    ///
    /// # Errors
    /// If the configuration is already joint, has no voters, the changes
    /// would remove every incoming voter, or the result breaks an invariant.
    pub fn enter_joint(
        &self,
        auto_leave: bool,
        ccs: &[ConfChangeSingle],
    ) -> Result<(Config, ProgressMap), String> {
        let (mut cfg, mut prs) = self.check_and_copy()?;
        if cfg.voters.is_joint() {
            return Err("config is already joint".to_string());
        }
        if cfg.voters.incoming.is_empty() {
            // An empty config may be populated by simple changes (bootstrap
            // and tests), but a joint config needs a quorum on both sides.
            return Err("can't make a zero-voter config joint".to_string());
        }
        cfg.voters.outgoing = cfg.voters.incoming.clone();
        self.apply(&mut cfg, &mut prs, ccs)?;
        cfg.auto_leave = auto_leave;
        check_and_return((cfg, prs))
    }

    /// Leaves a joint configuration: the outgoing half is dropped, staged
    /// learners (`learners_next`) become learners, and the progress of nodes
    /// that are no longer members is dropped.
    ///
    /// # Errors
    /// If the configuration is not joint, or the tracker's configuration
    /// breaks an invariant.
    pub fn leave_joint(&self) -> Result<(Config, ProgressMap), String> {
        let (mut cfg, mut prs) = self.check_and_copy()?;
        if !cfg.voters.is_joint() {
            return Err("can't leave a non-joint config".to_string());
        }
        for id in std::mem::take(&mut cfg.learners_next) {
            cfg.learners.insert(id);
            // check_and_copy verified that every staged learner has progress.
            if let Some(pr) = prs.get_mut(&id) {
                pr.is_learner = true;
            }
        }
        let outgoing = std::mem::take(&mut cfg.voters.outgoing);
        for id in &outgoing {
            if !cfg.voters.incoming.contains(id) && !cfg.learners.contains(&id) {
                prs.remove(&id);
            }
        }
        cfg.auto_leave = false;
        check_and_return((cfg, prs))
    }

    /// Applies `ccs` directly, without a joint configuration. Only allowed
    /// if at most one voter is added or removed: then every majority of the
    /// old voters overlaps every majority of the new ones (Raft thesis §4.1),
    /// so the two can never decide differently. Learner changes are
    /// unrestricted.
    ///
    /// # Errors
    /// If the configuration is joint, more than one voter changes, the
    /// changes remove every voter, or the result breaks an invariant.
    pub fn simple(&self, ccs: &[ConfChangeSingle]) -> Result<(Config, ProgressMap), String> {
        let (mut cfg, mut prs) = self.check_and_copy()?;
        if cfg.voters.is_joint() {
            return Err("can't apply simple config change in joint config".to_string());
        }
        self.apply(&mut cfg, &mut prs, ccs)?;
        let before = self.tracker.config.voters.incoming.as_set();
        let after = cfg.voters.incoming.as_set();
        if before.symmetric_difference(after).nth(1).is_some() {
            return Err("more than one voter changed without entering joint config".to_string());
        }
        check_and_return((cfg, prs))
    }

    /// Applies each change to the incoming half of `cfg`.
    fn apply(
        &self,
        cfg: &mut Config,
        prs: &mut ProgressMap,
        ccs: &[ConfChangeSingle],
    ) -> Result<(), String> {
        for cc in ccs {
            // An application may zero the id of a change it decided not to
            // apply (etcd does); such changes are no-ops.
            if cc.node_id == NONE {
                continue;
            }
            match cc.change_type {
                ConfChangeType::AddNode => self.make_voter(cfg, prs, cc.node_id),
                ConfChangeType::AddLearnerNode => self.make_learner(cfg, prs, cc.node_id),
                ConfChangeType::RemoveNode => remove(cfg, prs, cc.node_id),
                ConfChangeType::UpdateNode => {}
            }
        }
        if cfg.voters.incoming.is_empty() {
            return Err("removed all voters".to_string());
        }
        Ok(())
    }

    /// Adds `id` as an incoming voter, promoting it if it is a learner.
    fn make_voter(&self, cfg: &mut Config, prs: &mut ProgressMap, id: NodeId) {
        let Some(pr) = prs.get_mut(&id) else {
            self.init_progress(cfg, prs, id, false);
            return;
        };
        pr.is_learner = false;
        cfg.learners.remove(&id);
        cfg.learners_next.remove(&id);
        cfg.voters.incoming.insert(id);
    }

    /// Adds `id` as a learner, demoting it if it is a voter.
    ///
    /// A voter of the outgoing half cannot become a learner while it still
    /// votes there: it is staged in `learners_next` and becomes a learner
    /// when the joint configuration is left.
    fn make_learner(&self, cfg: &mut Config, prs: &mut ProgressMap, id: NodeId) {
        let Some(pr) = prs.get(&id) else {
            self.init_progress(cfg, prs, id, true);
            return;
        };
        if pr.is_learner {
            return;
        }
        // Drop the incoming vote but keep the progress: the node stays a
        // member, only its role changes.
        let pr = pr.clone();
        remove(cfg, prs, id);
        let pr = prs.entry(id).or_insert(pr);
        if cfg.voters.outgoing.contains(id) {
            cfg.learners_next.insert(id);
        } else {
            pr.is_learner = true;
            cfg.learners.insert(id);
        }
    }

    /// Tracks a new member.
    fn init_progress(&self, cfg: &mut Config, prs: &mut ProgressMap, id: NodeId, is_learner: bool) {
        if is_learner {
            cfg.learners.insert(id);
        } else {
            cfg.voters.incoming.insert(id);
        }
        // Probing at the last index is optimistic: a new node usually has an
        // empty log and will be backed off to a snapshot. etcd does the same,
        // since an application may have installed a snapshot out of band.
        let mut pr = Progress::new(
            self.last_index.max(1),
            self.tracker.max_inflight,
            self.tracker.max_inflight_bytes,
        );
        pr.is_learner = is_learner;
        // A new member counts as active: otherwise CheckQuorum could depose
        // the leader before the member had a chance to answer.
        pr.recent_active = true;
        prs.insert(id, pr);
    }

    /// Clones the tracker's configuration and progress, after checking that
    /// they satisfy the invariants.
    fn check_and_copy(&self) -> Result<Working, String> {
        check_and_return((self.tracker.config.clone(), self.tracker.progress.clone()))
    }
}

/// Removes `id` from the incoming voters and the learners. Its progress is
/// kept while it still votes in the outgoing half.
fn remove(cfg: &mut Config, prs: &mut ProgressMap, id: NodeId) {
    if !prs.contains_key(&id) {
        return;
    }
    cfg.voters.incoming.remove(id);
    cfg.learners.remove(&id);
    cfg.learners_next.remove(&id);
    if !cfg.voters.outgoing.contains(id) {
        prs.remove(&id);
    }
}

/// Returns the working copy if it satisfies the [`Config`] invariants.
fn check_and_return(w: Working) -> Result<Working, String> {
    check_invariants(&w.0, &w.1)?;
    Ok(w)
}

/// Checks the [`Config`] invariants and that the progress map tracks exactly
/// the members.
///
/// The empty configuration is valid: it is where bootstrap (and tests)
/// start before adding the first voters.
fn check_invariants(cfg: &Config, prs: &ProgressMap) -> Result<(), String> {
    let members: BTreeSet<NodeId> = cfg
        .voters
        .ids()
        .chain(cfg.learners.iter().copied())
        .chain(cfg.learners_next.iter().copied())
        .collect();
    for id in &members {
        if !prs.contains_key(id) {
            return Err(format!("no progress for {id}"));
        }
    }
    // Beyond etcd: a progress must belong to a member, or the leader would
    // keep replicating to a node that left.
    if let Some(id) = prs.keys().find(|id| !members.contains(id)) {
        return Err(format!("{id} has progress but is not a member"));
    }
    for id in cfg.voters.ids() {
        if prs[&id].is_learner {
            return Err(format!("{id} is a voter but is marked as learner"));
        }
    }
    // A staged learner is staged because it still votes in the outgoing
    // half; until it leaves, it is no learner.
    for id in &cfg.learners_next {
        if !cfg.voters.outgoing.contains(*id) {
            return Err(format!(
                "{id} is in learners_next, but not in outgoing voters"
            ));
        }
        if prs[id].is_learner {
            return Err(format!(
                "{id} is in learners_next, but is already marked as learner"
            ));
        }
    }
    // Learners and voters never intersect.
    for id in &cfg.learners {
        if cfg.voters.outgoing.contains(*id) {
            return Err(format!("{id} is in learners and outgoing voters"));
        }
        if cfg.voters.incoming.contains(*id) {
            return Err(format!("{id} is in learners and incoming voters"));
        }
        if !prs[id].is_learner {
            return Err(format!("{id} is in learners, but is not marked as learner"));
        }
    }
    if !cfg.voters.is_joint() {
        if !cfg.learners_next.is_empty() {
            return Err("learners_next must be empty when not joint".to_string());
        }
        if cfg.auto_leave {
            return Err("auto_leave must be false when not joint".to_string());
        }
    }
    Ok(())
}
