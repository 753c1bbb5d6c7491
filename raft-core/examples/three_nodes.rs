//! A three-node raft cluster in one process: the application's side of the
//! Ready loop, with an in-memory "network" between the nodes.
//!
//! Run with `cargo run -p raft-core --example three_nodes`.

use std::collections::{BTreeMap, VecDeque};

use raft_core::{ConfState, Config, MemStorage, Message, RawNode, StateRole};

struct Node {
    raw: RawNode<MemStorage>,
    applied: Vec<String>,
}

impl Node {
    /// Handles one Ready: persist, send, apply, advance. Outgoing messages
    /// are pushed onto `net`.
    fn handle_ready(&mut self, net: &mut VecDeque<Message>) {
        if !self.raw.has_ready() {
            return;
        }
        let mut rd = self.raw.ready();
        // Messages that may leave before the write is durable.
        net.extend(rd.take_messages());
        let store = self.raw.store_mut();
        if let Some(snap) = rd.snapshot() {
            store.apply_snapshot(snap.clone()).expect("apply snapshot");
        }
        store.append(rd.entries()).expect("append");
        if let Some(hs) = rd.hard_state() {
            store.set_hard_state(*hs);
        }
        // A real node would fsync here when rd.must_sync().
        net.extend(rd.take_persisted_messages());
        for entry in rd.take_committed_entries() {
            if !entry.data.is_empty() {
                self.applied
                    .push(String::from_utf8_lossy(&entry.data).into_owned());
            }
        }
        self.raw.advance(rd);
    }
}

fn main() {
    let voters = ConfState::with_voters(vec![1, 2, 3]);
    let mut nodes: BTreeMap<u64, Node> = (1..=3)
        .map(|id| {
            let storage = MemStorage::new_with_conf_state(voters.clone());
            let raw = RawNode::new(&Config::new(id), storage).expect("valid config");
            (
                id,
                Node {
                    raw,
                    applied: Vec::new(),
                },
            )
        })
        .collect();
    let mut net = VecDeque::new();

    // Run the cluster until every node has applied every proposal.
    let proposals = ["alpha", "beta", "gamma"];
    let mut proposed = false;
    for round in 0..1000 {
        // Tick everyone (a real node ticks on a timer, e.g. every 100 ms).
        for node in nodes.values_mut() {
            node.raw.tick();
        }
        // Deliver and handle until the network is quiet.
        loop {
            for node in nodes.values_mut() {
                node.handle_ready(&mut net);
            }
            let Some(m) = net.pop_front() else { break };
            if let Some(node) = nodes.get_mut(&m.to) {
                let _ = node.raw.step(m);
            }
        }
        let leader = nodes
            .values()
            .find(|n| n.raw.raft().state() == StateRole::Leader)
            .map(|n| n.raw.raft().id);
        if let (Some(leader), false) = (leader, proposed) {
            println!("round {round}: node {leader} is the leader");
            for p in proposals {
                nodes
                    .get_mut(&leader)
                    .expect("leader exists")
                    .raw
                    .propose(p.as_bytes().to_vec())
                    .expect("leader accepts proposals");
            }
            proposed = true;
        }
        if nodes.values().all(|n| n.applied.len() == proposals.len()) {
            break;
        }
    }
    for (id, node) in &nodes {
        let st = node.raw.status();
        println!(
            "node {id}: {:<9} term {} commit {} applied {:?}",
            st.soft_state.raft_state.to_string(),
            st.hard_state.term,
            st.hard_state.commit,
            node.applied
        );
    }
    assert!(
        nodes.values().all(|n| n.applied == proposals),
        "every node applied every proposal, in order"
    );
}
