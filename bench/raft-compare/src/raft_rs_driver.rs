//! The raft-rs (tikv `raft` 0.7) driver.
//!
//! Ready handling follows raft-rs 0.7's contract: `messages()` may be sent at
//! once (only a leader has them: thesis 10.2.1 lets it send appends in parallel
//! with its own disk write), `persisted_messages()` only after the Ready's
//! entries and hard state are persisted; `advance()` returns a `LightReady`
//! whose commit index, messages and committed entries are handled in turn,
//! and `advance_apply()` then records them as applied.

use std::mem;

use bytes::Bytes;
use raft::eraftpb::{Entry, EntryType, Message};
use raft::storage::MemStorage;
use raft::{Config, RawNode, StateRole};

use crate::cluster::{self, Applied, Cluster, Delivery, Setup};

struct Node {
    raw: RawNode<MemStorage>,
    /// The same storage the RawNode reads (raft-rs's MemStorage is a shared handle).
    store: MemStorage,
    applied: Applied,
}

/// Three raft-rs nodes and the in-memory network between them.
pub struct RaftRsCluster {
    nodes: Vec<Node>,
    /// Messages sent and not yet delivered, in send order.
    queue: Vec<Message>,
    /// Spare buffer swapped with `queue` on every delivery round.
    delivering: Vec<Message>,
    delivery: Delivery,
}

fn apply(applied: &mut Applied, entries: &[Entry]) {
    for e in entries {
        if e.get_entry_type() == EntryType::EntryNormal && !e.data.is_empty() {
            applied.apply(&e.data);
        }
    }
}

impl Node {
    fn new(id: u64, setup: Setup) -> Node {
        let cfg = Config {
            id,
            election_tick: cluster::ELECTION_TICK,
            heartbeat_tick: cluster::HEARTBEAT_TICK,
            max_size_per_msg: cluster::MAX_SIZE_PER_MSG,
            max_inflight_msgs: cluster::MAX_INFLIGHT_MSGS,
            batch_append: setup.merge_appends,
            ..Config::default()
        };
        let store = MemStorage::new_with_conf_state((cluster::VOTERS.to_vec(), vec![]));
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let raw = RawNode::new(&cfg, store.clone(), &logger).expect("raft-rs RawNode::new");
        Node {
            raw,
            store,
            applied: Applied::default(),
        }
    }

    fn handle_ready(&mut self, out: &mut Vec<Message>) {
        let mut rd = self.raw.ready();
        if !rd.messages().is_empty() {
            out.append(&mut rd.take_messages());
        }
        if !rd.snapshot().is_empty() {
            self.store
                .wl()
                .apply_snapshot(rd.snapshot().clone())
                .expect("apply snapshot");
        }
        apply(&mut self.applied, rd.committed_entries());
        if !rd.entries().is_empty() {
            self.store.wl().append(rd.entries()).expect("append");
        }
        if let Some(hs) = rd.hs() {
            self.store.wl().set_hardstate(hs.clone());
        }
        if !rd.persisted_messages().is_empty() {
            out.append(&mut rd.take_persisted_messages());
        }
        let mut light = self.raw.advance(rd);
        if let Some(commit) = light.commit_index() {
            self.store.wl().mut_hard_state().set_commit(commit);
        }
        out.append(&mut light.take_messages());
        apply(&mut self.applied, light.committed_entries());
        self.raw.advance_apply();
    }
}

impl Cluster for RaftRsCluster {
    const NAME: &'static str = "raft-rs";

    fn new(setup: Setup) -> Self {
        let mut c = RaftRsCluster {
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
        assert_eq!(
            c.nodes[0].raw.raft.state,
            StateRole::Leader,
            "raft-rs: node 1 did not become leader"
        );
        c
    }

    #[inline]
    fn propose(&mut self, data: &[u8]) {
        self.nodes[0]
            .raw
            .propose(Vec::new(), data.to_vec())
            .expect("raft-rs propose");
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
                    for e in m.entries.iter_mut() {
                        e.data = Bytes::copy_from_slice(&e.data);
                    }
                }
                let to = (m.to - 1) as usize;
                self.nodes[to].raw.step(m).expect("raft-rs step");
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
            let applied = node.raw.raft.raft_log.applied;
            node.store.wl().compact(applied).expect("compact");
        }
    }
}
