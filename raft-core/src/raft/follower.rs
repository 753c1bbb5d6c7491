//! Message handling of followers (etcd's `stepFollower`).

use crate::error::{Error, Result};
use crate::raft::{CampaignType, Raft};
use crate::storage::Storage;
use crate::types::{Message, MessageType, NONE, ReadState};

impl<S: Storage> Raft<S> {
    pub(crate) fn step_follower(&mut self, mut m: Message) -> Result<()> {
        match m.msg_type {
            MessageType::Prop => {
                if self.lead == NONE || self.disable_proposal_forwarding {
                    return Err(Error::ProposalDropped);
                }
                m.to = self.lead;
                self.send(m);
            }
            MessageType::App => {
                self.election_elapsed = 0;
                self.lead = m.from;
                self.handle_append_entries(m);
            }
            MessageType::Heartbeat => {
                self.election_elapsed = 0;
                self.lead = m.from;
                self.handle_heartbeat(m);
            }
            MessageType::Snap => {
                self.election_elapsed = 0;
                self.lead = m.from;
                self.handle_snapshot(m);
            }
            MessageType::TransferLeader => {
                if self.lead == NONE {
                    return Ok(());
                }
                m.to = self.lead;
                self.send(m);
            }
            MessageType::TimeoutNow => {
                // A transfer target campaigns at once and without pre-vote:
                // the leader asked, so there is no partition to guard against.
                self.hup(CampaignType::Transfer);
            }
            MessageType::ReadIndex => {
                if self.lead == NONE {
                    // No leader to confirm the read: the application retries.
                    return Err(Error::ProposalDropped);
                }
                m.to = self.lead;
                self.send(m);
            }
            MessageType::ReadIndexResp => {
                if m.entries.len() != 1 {
                    return Ok(());
                }
                self.read_states.push(ReadState {
                    index: m.index,
                    request_ctx: m.entries.swap_remove(0).data,
                });
            }
            _ => {}
        }
        Ok(())
    }
}
