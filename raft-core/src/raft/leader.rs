//! Message handling of the leader (etcd's `stepLeader`).

use crate::error::{Error, Result};
use crate::quorum::VoteResult;
use crate::raft::Raft;
use crate::read_only::ReadOnlyOption;
use crate::storage::Storage;
use crate::tracker::ProgressState;
use crate::types::{ConfChangeI, Entry, Message, MessageType};

impl<S: Storage> Raft<S> {
    pub(crate) fn step_leader(&mut self, mut m: Message) -> Result<()> {
        // Messages that need no progress of the sender.
        match m.msg_type {
            MessageType::Beat => {
                self.bcast_heartbeat();
                return Ok(());
            }
            MessageType::CheckQuorum => {
                if !self.trk.quorum_active() {
                    // Raft thesis §6.2: a leader that has not heard from a
                    // quorum within an election timeout steps down, so that
                    // clients find the real leader.
                    self.become_follower(self.term, crate::types::NONE);
                }
                // Mark everyone but ourselves inactive for the next round.
                let id = self.id;
                self.trk.visit(|pid, pr| {
                    if pid != id {
                        pr.recent_active = false;
                    }
                });
                return Ok(());
            }
            MessageType::Prop => {
                assert!(!m.entries.is_empty(), "node {}: empty proposal", self.id);
                if !self.trk.progress.contains_key(&self.id) {
                    // Removed from the configuration while leading.
                    return Err(Error::ProposalDropped);
                }
                if self.lead_transferee != crate::types::NONE {
                    // Proposals wait for the new leader.
                    return Err(Error::ProposalDropped);
                }
                self.screen_conf_changes(&mut m.entries);
                if !self.append_entry(m.entries) {
                    return Err(Error::ProposalDropped);
                }
                self.bcast_append_or_defer();
                return Ok(());
            }
            MessageType::ReadIndex => {
                if self.trk.is_singleton() {
                    // Only one voter: no one to confirm leadership with.
                    let committed = self.raft_log.committed;
                    self.response_to_read_index_req(m, committed);
                    return Ok(());
                }
                if !self.committed_entry_in_current_term() {
                    // Our commit index may lag the previous leader's until an
                    // entry of our term commits (Raft thesis §6.4 step 1).
                    self.pending_read_index_messages.push(m);
                    return Ok(());
                }
                self.send_read_index_response(m);
                return Ok(());
            }
            _ => {}
        }

        // Everything else concerns a member's progress.
        let from = m.from;
        let Some(pr) = self.trk.progress.get_mut(&from) else {
            return Ok(());
        };
        match m.msg_type {
            MessageType::AppResp => {
                // Also reached by the leader's own ack of its durable entries.
                pr.recent_active = true;
                if m.reject {
                    self.handle_append_rejection(&m);
                } else {
                    self.handle_append_success(&m);
                }
            }
            MessageType::HeartbeatResp => {
                pr.recent_active = true;
                pr.msg_app_flow_paused = false;
                // Send an append if the follower lags (this also revives a
                // follower whose in-flight appends were all lost) or is
                // probing (so it can return to Replicate once it answers).
                if pr.matched < self.raft_log.last_index() || pr.state == ProgressState::Probe {
                    self.send_append(from);
                }
                if self.read_only.option != ReadOnlyOption::Safe || m.context.is_empty() {
                    return Ok(());
                }
                let Some(acks) = self.read_only.recv_ack(from, &m.context) else {
                    return Ok(());
                };
                let result = self
                    .trk
                    .config
                    .voters
                    .vote_result(&|id| acks.contains(&id).then_some(true));
                if result != VoteResult::Won {
                    return Ok(());
                }
                for rs in self.read_only.advance(&m) {
                    self.response_to_read_index_req(rs.req, rs.index);
                }
            }
            MessageType::SnapStatus => {
                if pr.state != ProgressState::Snapshot {
                    return Ok(());
                }
                if m.reject {
                    // Forget the snapshot first, or probing would start from
                    // an index the follower never got.
                    pr.pending_snapshot = 0;
                }
                pr.become_probe();
                // Wait for the follower's answer (or a heartbeat interval,
                // after a failure) before the next append.
                pr.msg_app_flow_paused = true;
            }
            // An optimistic pipeline to an unreachable node has most likely
            // lost messages: fall back to probing.
            MessageType::Unreachable if pr.state == ProgressState::Replicate => {
                pr.become_probe();
            }
            MessageType::TransferLeader => {
                if pr.is_learner {
                    return Ok(());
                }
                let transferee = from;
                if self.lead_transferee != crate::types::NONE {
                    if self.lead_transferee == transferee {
                        return Ok(());
                    }
                    self.abort_leader_transfer();
                }
                if transferee == self.id {
                    return Ok(());
                }
                // The transfer must finish within an election timeout.
                self.election_elapsed = 0;
                self.lead_transferee = transferee;
                if self.trk.progress[&transferee].matched == self.raft_log.last_index() {
                    self.send_timeout_now(transferee);
                } else {
                    // Catch the target up first (Raft thesis §3.10).
                    self.send_append(transferee);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Replaces configuration changes that may not be proposed now with
    /// empty normal entries: one while another is unapplied, one other than
    /// "leave" while joint, or "leave" while not joint. Records the index of
    /// the accepted ones.
    fn screen_conf_changes(&mut self, entries: &mut [Entry]) {
        for (i, e) in entries.iter_mut().enumerate() {
            if e.entry_type == crate::types::EntryType::Normal {
                continue;
            }
            let already_pending = self.pending_conf_index > self.raft_log.applied;
            let already_joint = self.trk.config.voters.is_joint();
            let refuse = match ConfChangeI::from_entry(e) {
                Err(_) => true,
                Ok(cc) => {
                    let wants_leave_joint = cc.as_v2().changes.is_empty();
                    already_pending
                        || (already_joint && !wants_leave_joint)
                        || (!already_joint && wants_leave_joint)
                }
            };
            if refuse {
                *e = Entry::default();
            } else {
                self.pending_conf_index = self.raft_log.last_index() + i as u64 + 1;
            }
        }
    }

    fn handle_append_rejection(&mut self, m: &Message) {
        // `reject_hint` is where the follower suggests we try next, and
        // `log_term` its term there. If it has a divergent uncommitted tail,
        // probing back one index per round trip could take very long; instead
        // jump to the last index of our log whose term is <= the follower's
        // term at the hint: entries between cannot match (log matching).
        let mut next_probe = m.reject_hint;
        if m.log_term > 0 {
            next_probe = self
                .raft_log
                .find_conflict_by_term(m.reject_hint, m.log_term)
                .0;
        }
        let pr = self
            .trk
            .progress
            .get_mut(&m.from)
            .expect("checked by caller");
        if pr.maybe_decr_to(m.index, next_probe) {
            if pr.state == ProgressState::Replicate {
                pr.become_probe();
            }
            self.send_append(m.from);
        }
    }

    fn handle_append_success(&mut self, m: &Message) {
        let first_index = self.raft_log.first_index();
        let pr = self
            .trk
            .progress
            .get_mut(&m.from)
            .expect("checked by caller");
        // Update if the ack raises the match index, or if it lets a probing
        // follower that is already caught up go back to Replicate.
        if !(pr.maybe_update(m.index)
            || (pr.matched == m.index && pr.state == ProgressState::Probe))
        {
            return;
        }
        match pr.state {
            ProgressState::Probe => pr.become_replicate(),
            ProgressState::Snapshot if pr.matched + 1 >= first_index => {
                // Caught up past the compacted log, by whatever snapshot:
                // replicate from the log again, via probe so the snapshot's
                // index is taken into account.
                pr.become_probe();
                pr.become_replicate();
            }
            ProgressState::Replicate => pr.inflights.free_le(m.index),
            ProgressState::Snapshot => {}
        }
        if self.maybe_commit() {
            // Our commit index moved in our term: reads waiting for that can
            // proceed, and followers learn the new commit index.
            self.release_pending_read_index_messages();
            self.bcast_append_or_defer();
        } else if m.from != self.id
            && self.trk.progress[&m.from].can_bump_commit(self.raft_log.committed)
        {
            // This follower may not know the commit index yet; tell it now
            // rather than at the next heartbeat.
            self.send_append(m.from);
        }
        // Flow control may allow more appends now (leaving probe, or freed
        // inflights): send as many as allowed, without empty ones.
        if m.from != self.id {
            while self.maybe_send_append(m.from, false) {}
        }
        if m.from == self.lead_transferee
            && self.trk.progress[&m.from].matched == self.raft_log.last_index()
        {
            self.send_timeout_now(m.from);
        }
    }
}
