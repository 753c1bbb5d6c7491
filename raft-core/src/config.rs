//! The configuration of a raft node.

use crate::error::{Error, Result};
use crate::read_only::ReadOnlyOption;
use crate::types::NodeId;

/// The parameters of a raft node. Build one with [`Config::new`] and adjust
/// fields; [`RawNode::new`](crate::RawNode::new) validates it.
///
/// Times are counted in ticks: the application calls `tick()` at a fixed
/// interval (the server uses 100 ms), and raft has no other notion of time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// This node's id; must be non-zero.
    pub id: NodeId,
    /// Ticks without hearing from a leader after which a follower campaigns.
    /// The actual timeout is randomized in `[election_tick, 2 * election_tick)`
    /// (Raft thesis §3.4). Must be greater than `heartbeat_tick`; 10x is usual.
    pub election_tick: usize,
    /// Ticks between the leader's heartbeats.
    pub heartbeat_tick: usize,
    /// The last index the application has applied, when restarting. Raft will
    /// not hand out committed entries at or below it. 0 on a fresh start.
    pub applied: u64,
    /// The most bytes (counted by [`Entry::size`](crate::Entry::size)) of
    /// entries in one append message; a single larger entry is still sent.
    pub max_size_per_msg: u64,
    /// The most bytes of committed entries handed out in Ready messages that
    /// the application has not yet applied (acknowledged by `advance`). 0
    /// means `max_size_per_msg`.
    pub max_committed_size_per_ready: u64,
    /// The most payload bytes the leader keeps uncommitted; proposals beyond
    /// it are dropped with [`Error::ProposalDropped`]. 0 means no limit.
    pub max_uncommitted_entries_size: u64,
    /// The most append messages in flight to one follower in Replicate state
    /// (the pipeline depth).
    pub max_inflight_msgs: usize,
    /// The most payload bytes in flight to one follower. 0 means no limit.
    pub max_inflight_bytes: u64,
    /// The leader steps down if it has not heard from a quorum within an
    /// election timeout, and followers ignore vote requests while they hear a
    /// live leader (Raft thesis §6.2 / §4.2.3).
    pub check_quorum: bool,
    /// Run a pre-vote round before campaigning, so that a node rejoining after
    /// a partition does not disrupt the cluster (Raft thesis §9.6).
    pub pre_vote: bool,
    /// How `read_index` requests are confirmed.
    pub read_only_option: ReadOnlyOption,
    /// Drop proposals on followers instead of forwarding them to the leader.
    pub disable_proposal_forwarding: bool,
    /// A leader that is removed from (or demoted in) the configuration steps
    /// down when it applies the change. Without it, it keeps leading until the
    /// application stops it.
    pub step_down_on_removal: bool,
    /// Build the leader's appends to followers when the application takes
    /// a [`Ready`](crate::Ready) instead of on every proposal (and every
    /// commit index advance), so that everything proposed between two
    /// Readies goes to each follower in as few messages as
    /// `max_size_per_msg` allows. Off by default, as in etcd: each proposal
    /// then makes its own append to each follower, which is simplest to
    /// trace but costs a message (and an acknowledgement) per proposal per
    /// follower under load. The messages carry the same entries either way;
    /// only their number and grouping change. The idea is raft-rs's
    /// `batch_append` and CockroachDB's lazy appends.
    pub batch_appends: bool,
    /// The seed of the random election timeouts; runs with the same seeds
    /// and inputs are identical.
    pub seed: u64,
}

impl Config {
    /// A configuration with sane defaults for node `id`: election after 10
    /// ticks, heartbeat every tick, pre-vote and check-quorum on, 1 MiB
    /// messages, 256 messages in flight, safe linearizable reads.
    pub fn new(id: NodeId) -> Self {
        Config {
            id,
            election_tick: 10,
            heartbeat_tick: 1,
            applied: 0,
            max_size_per_msg: 1024 * 1024,
            max_committed_size_per_ready: 0,
            max_uncommitted_entries_size: 0,
            max_inflight_msgs: 256,
            max_inflight_bytes: 0,
            check_quorum: true,
            pre_vote: true,
            read_only_option: ReadOnlyOption::Safe,
            disable_proposal_forwarding: false,
            step_down_on_removal: true,
            batch_appends: false,
            seed: id,
        }
    }

    /// Checks every setting.
    ///
    /// # Errors
    /// [`Error::ConfigInvalid`] naming the first bad setting and why.
    pub fn validate(&self) -> Result<()> {
        let invalid = |s: &str| Err(Error::ConfigInvalid(s.to_string()));
        if self.id == 0 {
            return invalid("id must not be 0 (0 means \"no node\")");
        }
        if self.heartbeat_tick == 0 {
            return invalid("heartbeat_tick must be greater than 0");
        }
        if self.election_tick <= self.heartbeat_tick {
            return invalid("election_tick must be greater than heartbeat_tick");
        }
        if self.max_inflight_msgs == 0 {
            return invalid("max_inflight_msgs must be greater than 0");
        }
        if self.max_inflight_bytes != 0 && self.max_inflight_bytes < self.max_size_per_msg {
            return invalid("max_inflight_bytes must be 0 (no limit) or at least max_size_per_msg");
        }
        if self.read_only_option == ReadOnlyOption::LeaseBased && !self.check_quorum {
            return invalid("check_quorum must be enabled when read_only_option is LeaseBased");
        }
        Ok(())
    }

    /// `max_committed_size_per_ready` with 0 meaning `max_size_per_msg`.
    pub(crate) fn effective_max_committed_size(&self) -> u64 {
        match self.max_committed_size_per_ready {
            0 => self.max_size_per_msg,
            n => n,
        }
    }

    /// `max_uncommitted_entries_size` with 0 meaning no limit.
    pub(crate) fn effective_max_uncommitted_size(&self) -> u64 {
        match self.max_uncommitted_entries_size {
            0 => u64::MAX,
            n => n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::new(1).validate().unwrap();
    }

    #[test]
    fn every_bad_setting_is_named() {
        type Mutation = Box<dyn Fn(&mut Config)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|c| c.id = 0), "id"),
            (Box::new(|c| c.heartbeat_tick = 0), "heartbeat_tick"),
            (Box::new(|c| c.election_tick = 1), "election_tick"),
            (Box::new(|c| c.max_inflight_msgs = 0), "max_inflight_msgs"),
            (
                Box::new(|c| c.max_inflight_bytes = 10),
                "max_inflight_bytes",
            ),
            (
                Box::new(|c| {
                    c.read_only_option = ReadOnlyOption::LeaseBased;
                    c.check_quorum = false;
                }),
                "check_quorum",
            ),
        ];
        for (mutate, name) in cases {
            let mut c = Config::new(1);
            mutate(&mut c);
            match c.validate() {
                Err(Error::ConfigInvalid(msg)) => assert!(msg.contains(name), "{msg}"),
                other => panic!("expected ConfigInvalid naming {name}, got {other:?}"),
            }
        }
    }
}
