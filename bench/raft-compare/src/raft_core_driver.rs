//! The raft-core driver.
//!
//! Ready handling follows raft-core's etcd-style contract, in the same order
//! as the raft-rs driver: `messages()` are sent at once (only a leader has
//! them: thesis 10.2.1 lets it send appends in parallel with its own disk
//! write), the snapshot, entries and hard state are persisted,
//! `persisted_messages()` (acks and votes) are sent only then, committed
//! entries are applied, and `advance()` steps the node's own acks back in
//! (etcd's `stepsOnAdvance`). raft-core needs no second "light ready":
//! everything `advance()` produces shows up in the next Ready.

use std::mem;

use bytes::Bytes;
use raft_core::{
    ConfState, Config, Entry, EntryType, MemStorage, Message, NO_LIMIT, RawNode, StateRole,
    StorageError,
};

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
    fn new(id: u64, setup: Setup) -> Node {
        // `Setup::merge_appends` is raft-core's `batch_appends`: the leader
        // builds its appends when the Ready is taken, so the proposals of a
        // cycle go to each follower in one message (raft-rs's `batch_append`
        // merges them into the first queued append instead). The other
        // settings are those the raft-rs driver gets (raft-rs's defaults
        // where the harness says nothing: no pre-vote, no check-quorum, no
        // limit on the committed entries per Ready).
        let cfg = Config {
            batch_appends: setup.merge_appends,
            election_tick: cluster::ELECTION_TICK,
            heartbeat_tick: cluster::HEARTBEAT_TICK,
            max_size_per_msg: cluster::MAX_SIZE_PER_MSG,
            max_inflight_msgs: cluster::MAX_INFLIGHT_MSGS,
            max_committed_size_per_ready: NO_LIMIT,
            pre_vote: false,
            check_quorum: false,
            ..Config::new(id)
        };
        let store = MemStorage::new_with_conf_state(ConfState::with_voters(cluster::VOTERS));
        let raw = RawNode::new(&cfg, store).expect("raft-core RawNode::new");
        Node {
            raw,
            applied: Applied::default(),
        }
    }

    fn handle_ready(&mut self, out: &mut Vec<Message>) {
        let mut rd = self.raw.ready();
        if !rd.messages().is_empty() {
            out.append(&mut rd.take_messages());
        }
        let store = self.raw.store_mut();
        // Never taken here: compaction only happens when every follower
        // already has every entry.
        if let Some(snap) = rd.take_snapshot() {
            store.apply_snapshot(snap).expect("apply snapshot");
        }
        if !rd.entries().is_empty() {
            // raft-core's MemStorage can take the Ready's entries by value
            // (raft-rs's only appends a slice, cloning every entry).
            store.append_owned(rd.take_entries()).expect("append");
        }
        if let Some(hs) = rd.hard_state() {
            store.set_hard_state(*hs);
        }
        if !rd.persisted_messages().is_empty() {
            out.append(&mut rd.take_persisted_messages());
        }
        apply(&mut self.applied, rd.committed_entries());
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
        assert_eq!(
            c.nodes[0].raw.raft().state(),
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
            let applied = node.raw.raft().raft_log.applied();
            // Nothing applied since the last compaction: nothing to drop.
            match node.raw.store_mut().compact(applied) {
                Ok(()) | Err(StorageError::Compacted) => {}
                Err(e) => panic!("raft-core compact: {e}"),
            }
        }
    }
}
