//! The liveness phase: everything healed, no more crashes or losses; the
//! cluster must elect a leader and commit and apply a new proposal on every
//! member.

use super::checker::members;
use super::cluster::{MARKER, Sim, is_joint};

/// After healing, the slowest member must apply something new (or the
/// leader must replicate more) at least this often, in ticks... Generous:
/// without pre-vote, nodes that cannot win (stale logs or configurations)
/// keep campaigning and resetting everyone's election timer, and the one
/// node that can win only gets a chance when its timer fires first (seed
/// 7679 of one version needed 20 rounds of that, about 450 ticks).
const LIVENESS_STALL_TICKS: u64 = 1000;
/// ...and within this many ticks a leader must have committed a new
/// proposal that every member has applied.
const LIVENESS_MAX_TICKS: u64 = 10_000;

impl Sim {
    /// Heals everything, then requires that within `LIVENESS_TICKS` a
    /// leader commits a new proposal and every member applies it.
    pub(super) fn liveness(&mut self) -> Result<(), String> {
        self.faults = false;
        self.blocked.clear();
        for node in self.nodes.values_mut() {
            node.snapshot_unavailable = false;
            if let Some(raw) = node.raw_mut() {
                raw.store_mut().set_snapshot_unavailable(false);
            }
        }
        let down = self.down_ids();
        for id in down {
            self.restart(id);
        }
        trace!(self, "LIVENESS PHASE");
        let tick = self.opts.rounds_per_tick;
        let start = self.now;
        let deadline = self.now + LIVENESS_MAX_TICKS * tick;
        let retry = 2 * self.opts.election_tick as u64 * tick;
        let mut next_attempt = self.now;
        let mut attempts = 0;
        // The backlog left by the fault phase may take long to replicate
        // with tiny messages and one append in flight (and a new leader
        // commits nothing until its own entry, behind that backlog, is
        // replicated), so the bound is on time without progress, with a
        // hard cap. Progress: the slowest member applies more, or the
        // leader's replication (its members' match indexes) advances.
        let mut progress = (0, self.now);
        let mut replicated = (0, 0);
        while self.now < deadline {
            if self.now - progress.1 > LIVENESS_STALL_TICKS * tick {
                return Err(format!(
                    "liveness: no progress for {LIVENESS_STALL_TICKS} ticks after healing: the \
                     slowest member is stuck at applied index {} (leader now: {:?}, first \
                     marker applied at {:?})",
                    progress.0,
                    self.leader(),
                    self.checker.first_marker
                ));
            }
            self.round()?;
            let Some(lead) = self.leader() else { continue };
            let r = self.nodes[&lead].raw().expect("up").raft();
            let cs = r.tracker().conf_state();
            let matched: u64 = r.tracker().progress.values().map(|pr| pr.matched).sum();
            if (r.term, matched) > replicated {
                if r.term == replicated.0 {
                    progress.1 = self.now;
                }
                replicated = (r.term, matched);
            }
            let mut required = members(&cs);
            required.insert(lead);
            let laggard = required
                .iter()
                .map(|m| {
                    let n = &self.nodes[m];
                    if n.is_up() { n.app.applied } else { 0 }
                })
                .min()
                .unwrap_or(0);
            if laggard > progress.0 {
                progress = (laggard, self.now);
            }
            if let Some(mi) = self.checker.first_marker
                && laggard >= mi
            {
                self.stats.liveness_ticks = (self.now - start) / tick;
                return Ok(());
            }
            if self.now >= next_attempt {
                next_attempt = self.now + retry;
                attempts += 1;
                let data = [MARKER, format!("{attempts}").as_bytes()].concat();
                let res = self.raw_mut(lead).propose(data);
                trace!(
                    self,
                    "node {lead}: propose liveness marker {attempts} -> {res:?}"
                );
                let cs = self.nodes[&lead].app.conf.clone();
                if is_joint(&cs) && !cs.auto_leave {
                    self.propose_conf_change(lead);
                }
            }
        }
        Err(format!(
            "liveness: no leader committed and applied a new proposal on every member within \
             {LIVENESS_MAX_TICKS} ticks of healing (leader now: {:?}, first marker applied at \
             {:?}, slowest member at {})",
            self.leader(),
            self.checker.first_marker,
            progress.0
        ))
    }
}
