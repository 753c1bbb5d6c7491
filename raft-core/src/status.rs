//! [`Status`]: a point-in-time view of a node, for monitoring and tests.

use crate::raft::Raft;
use crate::storage::Storage;
use crate::tracker::{Config as TrackerConfig, ProgressMap};
use crate::types::{HardState, NodeId, SoftState, StateRole};

/// A copy of a node's state at one moment.
#[derive(Clone, Debug)]
pub struct Status {
    /// The node's id.
    pub id: NodeId,
    /// Term, vote and commit index.
    pub hard_state: HardState,
    /// Leader and role.
    pub soft_state: SoftState,
    /// The applied index.
    pub applied: u64,
    /// The progress of every member, on a leader; empty elsewhere.
    pub progress: ProgressMap,
    /// The target of a leader transfer in progress, or 0.
    pub lead_transferee: NodeId,
    /// The current configuration.
    pub config: TrackerConfig,
}

impl Status {
    pub(crate) fn new<S: Storage>(r: &Raft<S>) -> Status {
        let progress = if r.state == StateRole::Leader {
            r.trk.progress.clone()
        } else {
            ProgressMap::new()
        };
        Status {
            id: r.id,
            hard_state: r.hard_state(),
            soft_state: r.soft_state(),
            applied: r.raft_log.applied,
            progress,
            lead_transferee: r.lead_transferee,
            config: r.trk.config.clone(),
        }
    }
}
