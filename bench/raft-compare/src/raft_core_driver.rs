//! The raft-core driver.
//!
//! NOT COMPILED YET: enable it by uncommenting the `raft-core` dependency in
//! Cargo.toml and the three places marked "raft-core driver" in src/main.rs.
//! It was written against the RawNode API announced for raft-core before that
//! API existed; the lines marked `ADJUST` name things that API did not fix
//! (MemStorage construction, compaction, Config fields, the leader check,
//! the snapshot accessor's type) and may need renaming.
//!
//! Ready handling follows raft-core's etcd-style contract: persist the Ready's
//! snapshot, entries and hard state, then send its messages, apply its
//! committed entries, and `advance`. (A leader may send before its own write,
//! thesis 10.2.1; in one thread the order makes no difference.)

use std::mem;

use bytes::Bytes;
use raft_core::raw_node::RawNode;
use raft_core::storage::MemStorage;
use raft_core::{ConfState, Entry, EntryType, Message, StateRole};

use crate::cluster::{self, Applied, Cluster, Delivery, Setup};

struct Node {
    raw: RawNode<MemStorage>,
    applied: Applied,
}

/// Three raft-core nodes and the in-memory network between them.
pub struct RaftCoreCluster {
    nodes: Vec<Node>,
    /// Messages sent and not yet delivered, in send order.
    queue: Vec<Message>,
    /// Spare buffer swapped with `queue` on every delivery round.
    delivering: Vec<Message>,
    delivery: Delivery,
}

fn apply(applied: &mut Applied, entries: &[Entry]) {
    for e in entries {
        if e.entry_type == EntryType::Normal && !e.data.is_empty() {
            applied.apply(&e.data);
        }
    }
}

impl Node {
    fn new(id: u64, _setup: Setup) -> Node {
        // raft-core has no option to merge appends (`Setup::merge_appends`): etcd's
        // design sends what is new to each follower when it handles a proposal.
        // ADJUST: Config field names.
        let cfg = raft_core::config::Config {
            id,
            election_tick: cluster::ELECTION_TICK,
            heartbeat_tick: cluster::HEARTBEAT_TICK,
            max_size_per_msg: cluster::MAX_SIZE_PER_MSG,
            max_inflight_msgs: cluster::MAX_INFLIGHT_MSGS,
            ..Default::default()
        };
        // ADJUST: how a MemStorage starts with voters 1, 2, 3.
        let store = MemStorage::new_with_conf_state(ConfState::with_voters(cluster::VOTERS));
        let raw = RawNode::new(&cfg, store).expect("raft-core RawNode::new");
        Node {
            raw,
            applied: Applied::default(),
        }
    }

    fn handle_ready(&mut self, out: &mut Vec<Message>) {
        let mut rd = self.raw.ready();
        // ADJUST: the snapshot accessor's type. Never taken here: compaction only
        // happens when every follower already has every entry.
        if let Some(snap) = rd.snapshot() {
            self.raw
                .store_mut()
                .apply_snapshot(snap.clone())
                .expect("apply snapshot");
        }
        if !rd.entries().is_empty() {
            self.raw.store_mut().append(rd.entries()).expect("append");
        }
        if let Some(hs) = rd.hard_state() {
            self.raw.store_mut().set_hard_state(hs);
        }
        out.append(&mut rd.take_messages());
        apply(&mut self.applied, &rd.take_committed_entries());
        self.raw.advance(rd);
    }
}

impl Cluster for RaftCoreCluster {
    const NAME: &'static str = "raft-core";

    fn new(setup: Setup) -> Self {
        let mut c = RaftCoreCluster {
            nodes: cluster::VOTERS
                .iter()
                .map(|&id| Node::new(id, setup))
                .collect(),
            queue: Vec::new(),
            delivering: Vec::new(),
            delivery: setup.delivery,
        };
        c.nodes[0].raw.campaign().expect("campaign");
        c.run_until_quiescent();
        // ADJUST: where the role is read.
        assert_eq!(
            c.nodes[0].raw.status().soft_state.raft_state,
            StateRole::Leader,
            "raft-core: node 1 did not become leader"
        );
        c
    }

    #[inline]
    fn propose(&mut self, data: &[u8]) {
        self.nodes[0]
            .raw
            .propose(Bytes::copy_from_slice(data))
            .expect("raft-core propose");
    }

    fn run_until_quiescent(&mut self) -> u64 {
        let before = self.nodes[0].applied.count;
        loop {
            let mut busy = false;
            for node in &mut self.nodes {
                if node.raw.has_ready() {
                    busy = true;
                    node.handle_ready(&mut self.queue);
                }
            }
            if !busy && self.queue.is_empty() {
                break;
            }
            mem::swap(&mut self.queue, &mut self.delivering);
            for mut m in self.delivering.drain(..) {
                if self.delivery == Delivery::Copy {
                    for e in &mut m.entries {
                        e.data = Bytes::copy_from_slice(&e.data);
                    }
                }
                let to = (m.to - 1) as usize;
                self.nodes[to].raw.step(m).expect("raft-core step");
            }
        }
        self.nodes[0].applied.count - before
    }

    fn applied(&self) -> [Applied; 3] {
        [
            self.nodes[0].applied,
            self.nodes[1].applied,
            self.nodes[2].applied,
        ]
    }

    fn compact(&mut self) {
        for node in &mut self.nodes {
            // ADJUST: the applied index accessor and MemStorage's compaction.
            let applied = node.raw.status().applied;
            node.raw.store_mut().compact(applied).expect("compact");
        }
    }
}
