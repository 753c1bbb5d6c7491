//! Message handling of candidates and pre-candidates (etcd's `stepCandidate`).

use crate::error::{Error, Result};
use crate::quorum::VoteResult;
use crate::raft::{CampaignType, Raft};
use crate::storage::Storage;
use crate::types::{Message, MessageType, NONE, StateRole};

impl<S: Storage> Raft<S> {
    pub(crate) fn step_candidate(&mut self, m: Message) -> Result<()> {
        // Only responses to our own kind of vote request count: a stale
        // VoteResp must not be taken for a PreVoteResp.
        let my_vote_resp = if self.state == StateRole::PreCandidate {
            MessageType::PreVoteResp
        } else {
            MessageType::VoteResp
        };
        match m.msg_type {
            MessageType::Prop => return Err(Error::ProposalDropped),
            // An append, heartbeat or snapshot of our term means another node
            // won this term (Raft thesis §3.4): follow it.
            MessageType::App => {
                self.become_follower(m.term, m.from);
                self.handle_append_entries(m);
            }
            MessageType::Heartbeat => {
                self.become_follower(m.term, m.from);
                self.handle_heartbeat(m);
            }
            MessageType::Snap => {
                self.become_follower(m.term, m.from);
                self.handle_snapshot(m);
            }
            t if t == my_vote_resp => match self.poll(m.from, !m.reject) {
                VoteResult::Won => {
                    if self.state == StateRole::PreCandidate {
                        self.campaign(CampaignType::Election);
                    } else {
                        self.become_leader();
                        self.bcast_append();
                    }
                }
                // A rejected pre-vote may carry a higher term; keep ours.
                VoteResult::Lost => self.become_follower(self.term, NONE),
                VoteResult::Pending => {}
            },
            // Reads have no leader to go to; the application retries.
            MessageType::ReadIndex => return Err(Error::ProposalDropped),
            _ => {}
        }
        Ok(())
    }
}
