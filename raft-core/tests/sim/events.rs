//! The fault phase's random events: client requests (proposals, reads,
//! membership changes, leader transfers, campaigns), crashes and restarts,
//! partitions, storage that cannot produce a snapshot for a while.

use std::collections::BTreeSet;

use bytes::Bytes;
use raft_core::{
    ConfChange, ConfChangeI, ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2,
    ConfState, MemStorage,
};

use super::checker::members;
use super::cluster::{MAX_BACKLOG, MAX_DOWN, Sim, is_joint};
use super::node::{AppState, NodeState};

impl Sim {
    pub(super) fn random_events(&mut self) -> Result<(), String> {
        let o = self.opts.clone();
        if self.rng.chance(o.propose_rate) {
            for _ in 0..self.rng.range(1, o.propose_burst) {
                self.propose_random();
            }
        }
        if self.rng.chance(o.read_rate)
            && let Some(id) = self.rng.pick(&self.up_ids())
        {
            self.issue_read(id);
        }
        if self.rng.chance(o.conf_change_rate)
            && let Some(id) = self.rng.pick(&self.up_ids())
        {
            self.propose_conf_change(id);
        }
        if self.rng.chance(o.transfer_rate)
            && let Some(id) = self.rng.pick(&self.up_ids())
        {
            let voters = self.nodes[&id].app.conf.voters.clone();
            if let Some(to) = self.rng.pick(&voters) {
                trace!(self, "node {id}: transfer leadership to {to}");
                self.stats.transfers += 1;
                self.raw_mut(id).transfer_leader(to);
            }
        }
        if self.rng.chance(o.campaign_rate)
            && let Some(id) = self.rng.pick(&self.up_ids())
        {
            trace!(self, "node {id}: campaign");
            self.raw_mut(id)
                .campaign()
                .map_err(|e| format!("campaign: {e}"))?;
        }
        let down = self.down_ids();
        if down.len() < MAX_DOWN
            && self.rng.chance(o.crash_rate)
            && let Some(id) = self.rng.pick(&self.up_ids())
        {
            self.crash(id);
        }
        for id in down {
            if self.rng.chance(o.restart_rate) {
                self.restart(id);
            }
        }
        if self.rng.chance(o.snap_unavailable)
            && let Some(id) = self.rng.pick(&self.up_ids())
        {
            let node = self.nodes.get_mut(&id).expect("known");
            let slow = !node.snapshot_unavailable;
            node.snapshot_unavailable = slow;
            node.raw_mut()
                .expect("up")
                .store_mut()
                .set_snapshot_unavailable(slow);
            trace!(self, "node {id}: snapshots unavailable: {slow}");
        }
        if self.blocked.is_empty() {
            if self.rng.chance(o.partition_rate) {
                self.partition();
            }
        } else if self.rng.chance(o.heal_rate) {
            trace!(self, "partition heals");
            self.blocked.clear();
        }
        self.check()
    }

    fn propose_random(&mut self) {
        let Some(id) = self.rng.pick(&self.up_ids()) else {
            return;
        };
        // Clients wait for answers: with tiny messages and one append in
        // flight, unbounded load would only grow a backlog that takes the
        // liveness phase ages to replicate.
        let longest = self
            .nodes
            .values()
            .filter_map(|n| n.raw().map(|r| r.raft().raft_log.last_index()))
            .max()
            .unwrap_or(0);
        if longest > self.checker.max_commit + MAX_BACKLOG {
            return;
        }
        self.next_proposal += 1;
        let data = if self.rng.chance(0.05) {
            // Empty payloads are legal (and look like a leader's no-op).
            Vec::new()
        } else {
            let mut d = format!("p{}:", self.next_proposal).into_bytes();
            let len = self.rng.range(0, self.opts.max_payload) as usize;
            d.resize(d.len().max(len), b'.');
            d
        };
        let res = self.raw_mut(id).propose(data);
        trace!(
            self,
            "node {id}: propose p{} -> {res:?}", self.next_proposal
        );
    }

    /// Proposes a random membership change through node `id`, computed from
    /// the membership `id` has applied.
    pub(super) fn propose_conf_change(&mut self, id: u64) {
        let app = self.nodes[&id].app.clone();
        let context = Bytes::from(app.conf_index.to_le_bytes().to_vec());
        let Some(cc) = self.random_conf_change(&app.conf, context) else {
            return;
        };
        for c in cc.as_v2().changes {
            if matches!(self.nodes[&c.node_id].state, NodeState::Idle) {
                // A new server starts with an empty disk and waits for the
                // leader to catch it up.
                self.start(c.node_id, MemStorage::new(), AppState::default());
            }
        }
        let res = self.raw_mut(id).propose_conf_change(cc.clone());
        trace!(self, "node {id}: propose conf change {cc:?} -> {res:?}");
    }

    fn random_conf_change(&mut self, cs: &ConfState, context: Bytes) -> Option<ConfChangeI> {
        if is_joint(cs) {
            // Only an explicit joint config needs the application to leave.
            return (!cs.auto_leave).then(|| {
                ConfChangeI::V2(ConfChangeV2 {
                    context,
                    ..Default::default()
                })
            });
        }
        if cs.voters.is_empty() {
            return None;
        }
        let current = members(cs);
        let fresh: Vec<u64> = (1..=self.opts.size + self.opts.spare)
            .filter(|i| !current.contains(i) && !self.checker.retired.contains(i))
            .collect();
        let mut singles = Vec::new();
        let single = |t, id| ConfChangeSingle {
            change_type: t,
            node_id: id,
        };
        for &f in fresh.iter().take(2) {
            singles.push(single(ConfChangeType::AddNode, f));
            singles.push(single(ConfChangeType::AddLearnerNode, f));
        }
        for &l in &cs.learners {
            singles.push(single(ConfChangeType::AddNode, l));
            singles.push(single(ConfChangeType::RemoveNode, l));
        }
        for &v in &cs.voters {
            singles.push(single(ConfChangeType::RemoveNode, v));
            singles.push(single(ConfChangeType::AddLearnerNode, v));
        }
        let k = if self.rng.chance(0.3) {
            self.rng.range(2, 3)
        } else {
            1
        };
        let mut changes: Vec<ConfChangeSingle> = Vec::new();
        for _ in 0..k {
            let c = self.rng.pick(&singles).expect("there are voters");
            if changes.iter().all(|x| x.node_id != c.node_id) {
                changes.push(c);
            }
        }
        let old: BTreeSet<u64> = cs.voters.iter().copied().collect();
        let mut voters = old.clone();
        for c in &changes {
            match c.change_type {
                ConfChangeType::AddNode => voters.insert(c.node_id),
                _ => voters.remove(&c.node_id),
            };
        }
        // Viability: the old voters that stay voters must be a quorum of
        // the old configuration. A node that has not learned that the
        // change committed still campaigns under the old configuration, and
        // a removed or demoted voter may withhold its vote for good: a
        // demoted leader steps down holding entries nobody else has, so it
        // rejects every candidate's log, and being a learner it never
        // campaigns itself. (Seed 460 shrank {2, 4} to {2} that way and
        // never elected a leader again: a liveness hazard of applying
        // configurations at commit, as etcd does, rather than at append as
        // in Raft thesis §4.1.)
        let staying = old.intersection(&voters).count();
        if staying < old.len() / 2 + 1 || voters.len() > 7 {
            return None;
        }
        if changes.len() == 1 && self.rng.chance(0.4) {
            return Some(ConfChangeI::V1(ConfChange {
                change_type: changes[0].change_type,
                node_id: changes[0].node_id,
                context,
            }));
        }
        let transition = [
            ConfChangeTransition::Auto,
            ConfChangeTransition::JointImplicit,
            ConfChangeTransition::JointExplicit,
        ][self.rng.below(3) as usize];
        Some(ConfChangeI::V2(ConfChangeV2 {
            transition,
            changes,
            context,
        }))
    }

    fn partition(&mut self) {
        let ids: Vec<u64> = self
            .nodes
            .values()
            .filter(|n| matches!(n.state, NodeState::Up(_) | NodeState::Down(_)))
            .map(|n| n.id)
            .collect();
        if ids.len() < 2 {
            return;
        }
        let (a, b): (Vec<u64>, Vec<u64>) = match self.rng.below(3) {
            0 => {
                let mut a = Vec::new();
                let mut b = Vec::new();
                for &id in &ids {
                    if self.rng.chance(0.5) {
                        a.push(id);
                    } else {
                        b.push(id);
                    }
                }
                if a.is_empty() || b.is_empty() {
                    return;
                }
                for &x in &a {
                    for &y in &b {
                        self.blocked.insert((x, y));
                        self.blocked.insert((y, x));
                    }
                }
                (a, b)
            }
            kind => {
                // Isolate the leader (or a random node), both ways or one way.
                let target = match self.leader() {
                    Some(l) if self.rng.chance(0.7) => l,
                    _ => self.rng.pick(&ids).expect("non-empty"),
                };
                let others: Vec<u64> = ids.iter().copied().filter(|&i| i != target).collect();
                let one_way = kind == 2;
                let outgoing = self.rng.chance(0.5);
                for &o in &others {
                    if !one_way || outgoing {
                        self.blocked.insert((target, o));
                    }
                    if !one_way || !outgoing {
                        self.blocked.insert((o, target));
                    }
                }
                (vec![target], others)
            }
        };
        trace!(self, "PARTITION {a:?} | {b:?}: blocked {:?}", self.blocked);
    }
}
